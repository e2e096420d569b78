"""The embedded stack: everything suture needs, on free loopback ports, in one process.

``suture up`` runs it with the Temporal UI on 8233 and persistent state;
``suture demo``, ``suture drill`` and the drill tests run it with the sandbox
estate (Kubernetes emulator, exporters, Prometheus, Alertmanager, moto) in a
fresh state directory. The worker and the ingress are the production ones; only
their clients point at loopback. Pieces start in dependency order and stop in
reverse, so an interrupted run leaves no process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import httpx
from pytest_httpserver import HTTPServer
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from werkzeug import Request, Response

from sandbox.model import ServiceSpec
from sandbox.ports import LOOPBACK, free_port
from suture.config import Settings
from suture.errors import SutureError
from suture.identity import reliability_workflow_id
from suture.models import AlertNotice, LoopResult
from workers.devserver import DevServer
from workers.temporal_client import connect

SANDBOX_POLICIES = Path(__file__).parent / "policies"


class EscalationInbox:
    """A real HTTP receiver standing in for the on-call channel: it keeps every briefing."""

    def __init__(self) -> None:
        self.briefings: list[dict[str, Any]] = []
        self._server = HTTPServer(host=LOOPBACK, port=free_port())

    @property
    def url(self) -> str:
        return self._server.url_for("/briefings")

    def start(self) -> None:
        self._server.expect_request("/briefings", method="POST").respond_with_handler(self._keep)
        self._server.start()

    def stop(self) -> None:
        if self._server.is_running():
            self._server.stop()

    def for_run(self, workflow_id: str) -> list[dict[str, Any]]:
        return [briefing for briefing in self.briefings if briefing.get("workflow_id") == workflow_id]

    def _keep(self, request: Request) -> Response:
        self.briefings.append(request.get_json())
        return Response(status=204)


class Stack:
    """Temporal dev server, worker, ingress and, with ``sandbox``, the drill estate.

    Args:
        state_dir: where the dev server's database, the audit store and logs live.
        ui_port: Temporal UI port; None runs the dev server headless.
        sandbox: also run the estate the drills act on, and point the worker at it.
        settings: the environment's settings (policy folders, token, ...).
        task_queue: the queue the embedded worker polls.
        policy_dirs: policy folders (default: the sandbox's, then the settings').
        aws: with ``sandbox``, also run moto for the security loop.
        temporal_port, ingress_port: fixed ports (``suture up``); free ones when omitted.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        ui_port: int | None = None,
        sandbox: bool = True,
        settings: Settings | None = None,
        task_queue: str = "suture",
        policy_dirs: Sequence[Path] | None = None,
        aws: bool = True,
        temporal_port: int | None = None,
        ingress_port: int | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.sandbox = sandbox
        self.with_aws = aws
        self.settings = settings or Settings(state_dir=self.state_dir)
        self.task_queue = task_queue
        self.token = self.settings.webhook_token or secrets.token_urlsafe(24)
        self.dev = DevServer(
            self.state_dir / "temporal", port=temporal_port, ui_port=ui_port, headless=ui_port is None
        )
        self.ingress_port = ingress_port or free_port()
        self.escalations = EscalationInbox()
        if policy_dirs is not None:
            self.policy_dirs = list(policy_dirs)
        elif sandbox:
            self.policy_dirs = [SANDBOX_POLICIES, *self.settings.policy_dirs]
        else:
            self.policy_dirs = list(self.settings.policy_dirs)
        self._stops: list[Callable[[], Awaitable[Any]]] = []
        self._exporters: dict[tuple[str, str], Any] = {}
        self.client: Client
        self.kube: Any = None
        self.kube_api: Any = None
        self.estate: Any = None
        self.monitoring: Any = None
        self.aws: Any = None
        self.store: Any = None

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

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # Each stop is registered before its start, so an interrupted start still cleans up.
        self._stops.append(lambda: asyncio.to_thread(self.dev.stop))
        await asyncio.to_thread(self.dev.start)
        self.client = await connect(self.dev.address)
        self.escalations.start()
        self._stops.append(lambda: asyncio.to_thread(self.escalations.stop))
        if self.sandbox:
            await self._start_estate()
        await self._start_worker()
        await self._start_ingress()

    async def _start_estate(self) -> None:
        from sandbox.estate import Estate
        from sandbox.kube import KubeEmulator
        from sandbox.monitoring import Monitoring

        self.kube = KubeEmulator()
        await self.kube.start()
        self._stops.append(self.kube.stop)
        self.kube_api = self.kube.api_client()
        self.estate = Estate(self.kube_api)
        await self.estate.start()
        self._stops.append(self.estate.stop)
        self.monitoring = Monitoring(
            self.state_dir / "monitoring", f"{self.ingress_url}/alerts/alertmanager", self.token
        )
        self._stops.append(lambda: asyncio.to_thread(self.monitoring.stop))
        await asyncio.to_thread(self.monitoring.start)
        if self.with_aws:
            from sandbox.aws import MotoSandbox

            self.aws = MotoSandbox()
            self._stops.append(lambda: asyncio.to_thread(self.aws.stop))
            await asyncio.to_thread(self.aws.start)

    async def _start_worker(self) -> None:
        from workers.runtime import activity_providers, aws_containment
        from workers.worker import build_worker

        settings = self.settings.model_copy(
            update={
                # Briefings go to the configured channel, else to the stack's own inbox.
                "escalation_webhook": self.settings.escalation_webhook or self.escalations.url,
                "prometheus_url": self.monitoring.prometheus_url
                if self.monitoring
                else self.settings.prometheus_url,
            }
        )
        aws = aws_containment(self.aws.endpoint_url) if self.aws else None
        providers = activity_providers(
            settings, kube_api=self.kube_api, aws=aws, policy_dirs=self.policy_dirs
        )
        self.store = next(p.store for p in providers if hasattr(p, "store"))
        worker = build_worker(self.client, self.task_queue, providers)
        task = asyncio.create_task(worker.run())
        self._stops.append(lambda: _stop_worker(worker, task))

    async def _start_ingress(self) -> None:
        from workers.ingress import create_app, serve
        from workers.runtime import ingress_routers

        client = self.client

        async def provider() -> Client:
            return client

        app = create_app(provider, self.token, self.task_queue, routers=ingress_routers())
        started = asyncio.Event()
        task = asyncio.create_task(serve(app, LOOPBACK, self.ingress_port, started=started))
        await asyncio.wait_for(started.wait(), 15)
        self._stops.append(lambda: _cancel(task))

    async def stop(self) -> None:
        for exporter in self._exporters.values():
            exporter.stop()
        self._exporters.clear()
        while self._stops:
            stop = self._stops.pop()
            with contextlib.suppress(Exception):
                await stop()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- what drills use ---------------------------------------------------------------------

    async def add_service(
        self, spec: ServiceSpec, *, extra: Callable[[], Mapping[str, float]] | None = None, **layout: Any
    ) -> Any:
        """Deploy a service into the estate and have Prometheus scrape its exporter."""
        from sandbox.exporter import ServiceExporter

        await self.estate.add_service(spec, **layout)
        exporter = ServiceExporter(
            spec.namespace, spec.name, lambda: self.estate.observe(spec.namespace, spec.name), extra=extra
        ).start()
        self._exporters[(spec.namespace, spec.name)] = exporter
        self.monitoring.add_target(exporter.address, exporter.labels)
        return exporter

    async def alert(
        self, alertname: str, namespace: str, service: str, timeout_s: float = 60.0
    ) -> AlertNotice:
        """Wait until Alertmanager holds the alert, and return it as suture will receive it."""
        deadline = time.monotonic() + timeout_s
        filters = [f'alertname="{alertname}"', f'namespace="{namespace}"', f'service="{service}"']
        async with httpx.AsyncClient(base_url=self.monitoring.alertmanager_url, timeout=5) as http:
            while time.monotonic() < deadline:
                response = await http.get("/api/v2/alerts", params=[("filter", f) for f in filters])
                response.raise_for_status()
                for found in response.json():
                    return AlertNotice(
                        fingerprint=found["fingerprint"],
                        status="firing",
                        labels=found["labels"],
                        starts_at=found["startsAt"],
                        received_at=found["startsAt"],
                    )
                await asyncio.sleep(0.5)
        raise SutureError(f"{alertname} never fired for {namespace}/{service} within {timeout_s:.0f}s")

    async def run_for(
        self, alertname: str, namespace: str, service: str, timeout_s: float = 60.0
    ) -> WorkflowHandle[Any, Any]:
        """The reliability run the alert started, once the ingress has started it."""
        notice = await self.alert(alertname, namespace, service, timeout_s)
        handle = self.client.get_workflow_handle(reliability_workflow_id(notice), result_type=LoopResult)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                await handle.describe()
                return handle
            except RPCError:
                if time.monotonic() > deadline:
                    raise SutureError(f"no run started for {alertname} on {namespace}/{service}") from None
                await asyncio.sleep(0.3)

    def exporter(self, namespace: str, name: str) -> Any:
        return self._exporters[(namespace, name)]


async def _stop_worker(worker: Any, task: asyncio.Task[Any]) -> None:
    await worker.shutdown()
    await _cancel(task)


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
