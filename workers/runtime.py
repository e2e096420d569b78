"""The long-running processes: ``suture worker``, ``suture ingress``, ``suture up``.

Each builds its clients from :class:`suture.config.Settings` once, runs until
Ctrl-C or SIGTERM, and then stops its pieces in reverse order, letting the worker
finish the activity attempts it holds (Temporal would retry them anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from suture.config import Settings
from suture.errors import ConfigError

Say = Callable[[str], Any]


def activity_providers(
    settings: Settings,
    *,
    kube_api: Any | None = None,
    aws: Any | None = None,
    policy_dirs: Sequence[Path] | None = None,
) -> list[Any]:
    """The objects whose methods are the worker's activities, with their clients."""
    from activities.audit import AuditActivities
    from activities.governance import Governance
    from activities.kubernetes import KubernetesActions
    from activities.notify import Escalation
    from activities.policy_store import PolicyStore
    from activities.prometheus import PrometheusProbe, connect
    from suture.store import AuditStore

    store = AuditStore.create(settings.db_url)
    providers: list[Any] = [
        PolicyStore(list(policy_dirs or settings.policy_dirs)),
        AuditActivities(store),
        Governance(store),
        Escalation(settings.escalation_webhook),
        PrometheusProbe(connect(settings.prometheus_url)),
        KubernetesActions(kube_api if kube_api is not None else kubernetes_client(settings)),
    ]
    providers.append(aws if aws is not None else aws_containment())
    return providers


def kubernetes_client(settings: Settings) -> Any:
    """An official client from KUBECONFIG, the in-cluster service account, or ~/.kube/config."""
    from kubernetes import client, config

    try:
        if settings.kubeconfig:
            return config.new_client_from_config(config_file=settings.kubeconfig)
        try:
            config.load_incluster_config()
            return client.ApiClient()
        except config.ConfigException:
            return config.new_client_from_config()
    except (config.ConfigException, OSError) as error:
        raise ConfigError(f"KUBECONFIG: cannot load a Kubernetes configuration ({error})") from None


def aws_containment(endpoint_url: str | None = None) -> Any:
    """AWS containment through the usual credential chain (or an endpoint such as moto)."""
    import boto3

    from activities.aws import AwsContainment

    return AwsContainment(boto3.Session(), endpoint_url=endpoint_url)


async def run_worker(settings: Settings, say: Say) -> None:
    from workers.temporal_client import connect_settings
    from workers.worker import build_worker

    client = await connect_settings(settings)
    worker = build_worker(client, settings.task_queue, activity_providers(settings))
    say(f"worker polling task queue {settings.task_queue!r} on {settings.temporal_address}")
    async with worker:
        await _until_stopped()


async def run_ingress(
    settings: Settings,
    *,
    host: str | None,
    port: int | None,
    sqs_queue: str | None,
    say: Say,
    insecure: bool = False,
) -> None:
    from workers.ingress import create_app, serve
    from workers.temporal_client import LazyClient, connect_settings

    provider = LazyClient(lambda: connect_settings(settings))
    app = create_app(
        provider, settings.webhook_token, settings.task_queue, insecure=insecure, routers=ingress_routers()
    )
    host, port = host or settings.ingress_host, port or settings.ingress_port
    tasks = [asyncio.create_task(serve(app, host, port))]
    if sqs_queue:
        tasks.append(asyncio.create_task(_poll_sqs(provider, sqs_queue, settings.task_queue)))
        say(f"polling SQS queue {sqs_queue}")
    say(f"ingress listening on http://{host}:{port} (POST /alerts/alertmanager, POST /events/aws)")
    await _until_stopped(*tasks)


async def run_up(settings: Settings, *, sandbox: bool, ui_port: int, say: Say) -> None:
    from sandbox.stack import Stack

    async with Stack(
        settings.state_dir / "embedded",
        ui_port=ui_port,
        sandbox=sandbox,
        settings=settings,
        temporal_port=int(settings.temporal_address.rsplit(":", 1)[1]),
        ingress_port=settings.ingress_port,
    ) as stack:
        say(f"Temporal UI      {stack.ui_url}")
        say(f"Temporal         {stack.temporal_address} (export TEMPORAL_ADDRESS={stack.temporal_address})")
        say(f"ingress          {stack.ingress_url}  (bearer token: SUTURE_WEBHOOK_TOKEN)")
        if sandbox:
            say(f"Prometheus       {stack.monitoring.prometheus_url}")
            say(f"Alertmanager     {stack.monitoring.alertmanager_url}")
            say(f"Kubernetes API   {stack.kube.url} (the sandbox emulator)")
        say("Ctrl-C stops everything.")
        await _until_stopped()


def ingress_routers() -> list[Any]:
    """Routes the ingress serves beside the Alertmanager webhook, for every process that runs one."""
    from workers.aws_events import aws_router

    return [aws_router()]


async def _poll_sqs(provider: Any, queue_url: str, task_queue: str) -> None:
    from workers.aws_events import SqsPoller

    await SqsPoller(provider, queue_url, task_queue).run()


async def _until_stopped(*tasks: asyncio.Task[Any]) -> None:
    """Wait for Ctrl-C/SIGTERM (or a task to end), then cancel the tasks."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    waiter = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in (waiter, *tasks):
            task.cancel()
        await asyncio.gather(waiter, *tasks, return_exceptions=True)
