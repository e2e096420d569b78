"""The resource loop's activities, built from the same clients as the rest of the worker.

The sweep reads EC2 instances in the regions named by ``SUTURE_AWS_REGIONS``
(comma-separated; else ``AWS_REGION``/``AWS_DEFAULT_REGION``; else ``us-east-1``)
and the Deployments of the cluster the worker talks to. Its Prometheus client has
a longer timeout than the health checks': one batched query over 30 days of a
large fleet takes seconds, not milliseconds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from suture.config import Settings

SWEEP_QUERY_TIMEOUT_S = 120.0


def aws_regions(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    env = os.environ if environ is None else environ
    raw = env.get("SUTURE_AWS_REGIONS") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or ""
    regions = tuple(part.strip() for part in raw.split(",") if part.strip())
    return regions or ("us-east-1",)


def resource_providers(
    settings: Settings, *, store: Any, policies: Any, kube_api: Any, aws: Any
) -> list[Any]:
    """Activity providers of the resource loop, over the worker's store, policies and clients.

    Args:
        aws: the worker's AWS object, whose ``client(service, region)`` makes boto3 clients.
    """
    from activities.prometheus import connect
    from activities.reclaim import DeploymentReclaim, InstanceReclaim
    from activities.resource_bookkeeping import ResourceBookkeeping
    from activities.utilisation import FleetAnalyst

    def clients(service: str, region: str) -> Any:
        return aws.client(service, region)

    return [
        FleetAnalyst(
            connect(settings.prometheus_url, timeout_s=SWEEP_QUERY_TIMEOUT_S),
            ec2=clients,
            regions=aws_regions(),
            kube_api=kube_api,
        ),
        InstanceReclaim(clients),
        DeploymentReclaim(kube_api),
        ResourceBookkeeping(store, policies),
    ]
