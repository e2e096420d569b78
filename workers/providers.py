"""What every suture process builds from its settings: the activities' clients and the ingress routes.

``suture worker``, ``suture ingress`` and the embedded stack of ``suture up`` share
these, so a process started against a real cluster and the embedded one run the
same activities; the embedded stack only passes some clients in (a Kubernetes API
client, an AWS containment object) instead of having them built from the
environment. Heavy client libraries are imported when a provider is built, not
when this module is, so ``suture --help`` stays quick.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suture.config import Settings
from suture.errors import ConfigError

if TYPE_CHECKING:
    from suture.store import AuditStore


def activity_providers(
    settings: Settings,
    *,
    kube_api: Any | None = None,
    aws: Any | None = None,
    policy_dirs: Sequence[Path] | None = None,
    store: AuditStore | None = None,
    kafka_bootstrap: str | None = None,
) -> list[Any]:
    """The objects whose methods are the worker's activities, with their clients.

    Args:
        settings: where everything not passed in comes from.
        kube_api: a Kubernetes API client; built from ``KUBECONFIG`` when omitted.
        aws: the AWS containment object; the usual credential chain when omitted.
        policy_dirs: policy folders; ``settings.policy_dirs`` when omitted.
        store: the audit store; opened at ``settings.db_url`` when omitted.
        kafka_bootstrap: the Kafka cluster; ``SUTURE_KAFKA_BOOTSTRAP`` when omitted.

    Raises:
        ConfigError: no Kubernetes configuration could be loaded.
    """
    from activities.audit import AuditActivities
    from activities.channels import ChannelSender
    from activities.governance import Governance
    from activities.kubernetes import KubernetesActions
    from activities.notify import Escalation
    from activities.policy_store import PolicyStore
    from activities.prometheus import PrometheusProbe, connect
    from activities.readiness import PermissionProbe
    from activities.trust import TrustActivities
    from suture.stages import Stage
    from suture.store import AuditStore
    from workers.resource_worker import resource_providers

    store = store if store is not None else AuditStore.from_settings(settings)
    kube_api = kube_api if kube_api is not None else kubernetes_client(settings)
    providers: list[Any] = [
        PolicyStore(list(policy_dirs or settings.policy_dirs)),
        AuditActivities(store),
        Governance(store, Stage(settings.default_stage)),
        Escalation(settings.escalation_webhook),
        ChannelSender(),
        PrometheusProbe(connect(settings.prometheus_url)),
        KubernetesActions(kube_api),
        TrustActivities(store),
    ]
    aws = aws if aws is not None else aws_containment()
    providers.append(aws)
    providers.append(graph_provider(settings, store, kube_api, list(policy_dirs or settings.policy_dirs)))
    providers.append(kafka_provider(kafka_bootstrap))
    providers += resource_providers(
        settings,
        store=store,
        policies=providers[0],
        kube_api=kube_api,
        aws=aws,
    )
    providers.append(PermissionProbe(kube_api, aws.client))
    return providers


def graph_provider(settings: Settings, store: AuditStore, kube_api: Any, policy_dirs: list[Path]) -> Any:
    """The dependency graph's activities: stored beside the audit tables, read from the three sources."""
    from activities.graph import GraphActivities
    from activities.prometheus import PrometheusProbe, connect
    from suture.graph_store import GraphStore

    probe = PrometheusProbe(connect(settings.prometheus_url))
    return GraphActivities(GraphStore(store.engine), kube_api, probe, policy_dirs)


def kafka_provider(bootstrap: str | None = None) -> Any:
    """Kafka actions against ``bootstrap``, else ``SUTURE_KAFKA_BOOTSTRAP`` (``localhost:9092``).

    Clients connect per call, so no broker needs to be up when the worker starts.
    """
    import os

    from activities.kafka import KafkaActions

    return KafkaActions(bootstrap or os.environ.get("SUTURE_KAFKA_BOOTSTRAP", "localhost:9092"))


KUBE_CONNECTIONS = 64
"""Connections the Kubernetes client keeps open: one per activity the worker runs at once
(the client's default, five per core, made it drop and reopen connections under load)."""


def kubernetes_client(settings: Settings) -> Any:
    """An official client from KUBECONFIG, the in-cluster service account, or ~/.kube/config."""
    import yaml
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        if settings.kubeconfig:
            config.load_kube_config(config_file=settings.kubeconfig, client_configuration=configuration)
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                config.load_kube_config(client_configuration=configuration)
    # A file that is no kubeconfig fails deep in the loader with whatever it tripped on.
    except (config.ConfigException, OSError, yaml.YAMLError, TypeError, AttributeError, KeyError) as error:
        said = " ".join(str(error).split())[:300]
        raise ConfigError(f"KUBECONFIG: cannot load a Kubernetes configuration ({said})") from None
    configuration.connection_pool_maxsize = KUBE_CONNECTIONS
    return client.ApiClient(configuration)


def aws_containment(endpoint_url: str | None = None) -> Any:
    """AWS containment through the usual credential chain (or an endpoint such as moto)."""
    import boto3

    from activities.aws import AwsContainment

    return AwsContainment(boto3.Session(), endpoint_url=endpoint_url)


def ingress_routers() -> list[Any]:
    """Routes the ingress serves beside the Alertmanager webhook, for every process that runs one."""
    from workers.aws_events import aws_router

    return [aws_router()]
