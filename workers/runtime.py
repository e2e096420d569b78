"""The long-running processes: ``suture worker``, ``suture ingress``, ``suture up``.

Each builds its clients from :class:`suture.config.Settings` once, runs until
Ctrl-C or SIGTERM, and then stops its pieces in reverse order, letting the worker
finish the activity attempts it holds (Temporal would retry them anyway).
``suture up`` runs :class:`workers.embedded.EmbeddedStack`; only ``--sandbox``
reaches the drill estate, through :mod:`workers.sandbox_commands`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import Any

from suture.config import Settings
from workers.providers import activity_providers, ingress_routers

Say = Callable[[str], Any]


async def run_worker(settings: Settings, say: Say) -> None:
    from workers.devserver import free_port
    from workers.metrics import MetricsServer, metrics_port
    from workers.temporal_client import connect_settings, temporal_runtime
    from workers.worker import build_worker

    port = metrics_port()
    sdk_address = f"127.0.0.1:{free_port()}" if port else None
    client = await connect_settings(settings, runtime=temporal_runtime(sdk_address))
    worker = build_worker(client, settings.task_queue, activity_providers(settings))
    from workers.graph_schedule import ensure_graph_schedule

    await ensure_graph_schedule(client, settings.task_queue)
    await _sweep_schedule(client, settings, say)
    show_run_events()
    say(f"worker polling task queue {settings.task_queue!r} on {settings.temporal_address}")
    server = MetricsServer("0.0.0.0", port, sdk_address) if port else None
    if server is not None:
        say(f"worker metrics on {server.start()}")
    try:
        async with worker:
            await _until_stopped()
    finally:
        if server is not None:
            server.stop()


def show_run_events() -> None:
    """Log one line per run event (:mod:`suture.logs`): the worker processes want them."""
    import logging

    from suture.logs import RUN_EVENTS

    RUN_EVENTS.setLevel(logging.INFO)


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
        provider,
        settings.webhook_token,
        settings.task_queue,
        insecure=insecure,
        routers=ingress_routers(),
        prometheus_url=settings.prometheus_url,
    )
    host, port = host or settings.ingress_host, port or settings.ingress_port
    tasks = [asyncio.create_task(serve(app, host, port))]
    if sqs_queue:
        tasks.append(asyncio.create_task(_poll_sqs(provider, sqs_queue, settings.task_queue)))
        say(f"polling SQS queue {sqs_queue}")
    say(f"ingress listening on http://{host}:{port} (POST /alerts/alertmanager, POST /events/aws)")
    await _until_stopped(*tasks)


async def run_up(settings: Settings, *, sandbox: bool, ui_port: int, say: Say) -> None:
    """The embedded stack; with ``sandbox`` the drill estate too (which needs the sandbox extra)."""
    from workers.embedded import EmbeddedStack
    from workers.metrics import embedded_metrics_port

    state_dir = settings.state_dir / "embedded"
    temporal_port = int(settings.temporal_address.rsplit(":", 1)[1])
    stack: EmbeddedStack
    if sandbox:
        from workers.sandbox_commands import sandbox_stack

        stack = sandbox_stack(
            settings,
            state_dir,
            ui_port=ui_port,
            temporal_port=temporal_port,
            ingress_port=settings.ingress_port,
        )
        stack.metrics_port = embedded_metrics_port()
    else:
        stack = EmbeddedStack(
            state_dir,
            settings=settings,
            ui_port=ui_port,
            temporal_port=temporal_port,
            ingress_port=settings.ingress_port,
            metrics_port=embedded_metrics_port(),
        )
    show_run_events()
    async with stack:
        for component, address in stack.addresses():
            say(f"{component:<16} {address}")
        await _sweep_schedule(stack.client, settings, say)
        if not settings.webhook_token:
            # Shown once, here: senders need it, and nothing else prints or stores it.
            say(f"{'webhook token':<16} {stack.token}  (generated; set SUTURE_WEBHOOK_TOKEN to choose one)")
        from suture.models import Loop
        from suture.stages import Stage

        for loop in Loop:
            staged = stack.store.stage(loop, Stage(settings.default_stage))
            how = "" if staged.configured else " (the default; `suture stage` moves it)"
            say(f"{loop.value + ' stage':<16} {staged.stage}{how}")
        say("Ctrl-C stops everything.")
        await _until_stopped()


async def _sweep_schedule(client: Any, settings: Settings, say: Say) -> None:
    """Create or update the resource sweep's schedule, unless SUTURE_SWEEP_SCHEDULE=off."""
    from workers.schedules import ensure_sweep_schedule, schedule_enabled

    if schedule_enabled():
        say(f"{'resource sweep':<16} " + await ensure_sweep_schedule(client, settings.task_queue))


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
