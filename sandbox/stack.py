"""The drill stack: the embedded stack of ``suture up`` plus the estate the drills act on.

:class:`Stack` is :class:`workers.embedded.EmbeddedStack` (Temporal dev server,
the production worker and ingress) with, in :meth:`Stack.before_worker`, the
sandbox estate (Kubernetes emulator, exporters, Prometheus, Alertmanager, moto)
and an :class:`EscalationInbox` that keeps every briefing for the drills to read.
The worker's clients are pointed at them through the embedded stack's overrides;
nothing else differs from ``suture up``. ``suture demo``, ``suture drill`` and the
drill tests run it in a fresh state directory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from pytest_httpserver import HTTPServer
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from werkzeug import Request, Response

from sandbox.model import ServiceSpec
from sandbox.ports import LOOPBACK, free_port
from suture.config import Settings
from suture.errors import SutureError
from suture.identity import reliability_workflow_id
from suture.models import AlertNotice, LoopResult
from workers.embedded import ClientOverrides, EmbeddedStack
from workers.providers import aws_containment

SANDBOX_POLICIES = Path(__file__).parent / "policies"
SANDBOX_GRAPH = Path(__file__).parent / "graph"
"""The estate's declared dependencies (``dependencies.yaml``), a policy folder of its own."""


class EscalationInbox:
    """A real HTTP receiver standing in for the on-call channel: it keeps every briefing."""

    def __init__(self) -> None:
        self.briefings: list[dict[str, Any]] = []
        self._server = HTTPServer(host=LOOPBACK, port=free_port())

    @property
    def url(self) -> str:
        return self._server.url_for("/briefings")

    @property
    def running(self) -> bool:
        return bool(self._server.is_running())

    def start(self) -> None:
        # The sandbox's receivers answer from werkzeug, which logs one line per request otherwise.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
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


class Stack(EmbeddedStack):
    """The embedded stack and, with ``sandbox``, the drill estate its worker acts on.

    Args:
        state_dir: where the dev server's database, the audit store and logs live.
        ui_port: Temporal UI port; None runs the dev server headless.
        sandbox: also run the estate the drills act on, and point the worker at it.
        settings: the environment's settings (policy folders, token, ...).
        task_queue: the queue the embedded worker polls.
        policy_dirs: policy folders (default: the sandbox's, then the settings').
        aws: with ``sandbox``, also run moto for the security loop.
        temporal_port, ingress_port: fixed ports (``suture up --sandbox``); free ones when omitted.
        inbox: keep briefings in :attr:`escalations` unless the settings name a webhook;
            without it they go where ``suture up`` sends them (the webhook, else the log).
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
        inbox: bool = True,
    ) -> None:
        settings = settings or Settings(state_dir=Path(state_dir))
        if policy_dirs is None:
            policy_dirs = (
                [SANDBOX_POLICIES, SANDBOX_GRAPH, *settings.policy_dirs] if sandbox else settings.policy_dirs
            )
        super().__init__(
            state_dir,
            settings=settings,
            ui_port=ui_port,
            task_queue=task_queue,
            temporal_port=temporal_port,
            ingress_port=ingress_port,
            overrides=ClientOverrides(policy_dirs=list(policy_dirs)),
        )
        self.sandbox = sandbox
        self.with_aws = aws
        self.with_inbox = inbox
        self.escalations = EscalationInbox()
        self._exporters: dict[tuple[str, str], Any] = {}
        self.kube: Any = None
        self.kube_api: Any = None
        self.estate: Any = None
        self.monitoring: Any = None
        self.aws: Any = None
        self.resources: Any = None
        self.kafka: Any = None
        """The Kafka-protocol broker of the poison-message drill; None without the sandbox extra."""

    def addresses(self) -> list[tuple[str, str]]:
        shown = super().addresses()
        if self.sandbox:
            shown += [
                ("Prometheus", self.monitoring.prometheus_url),
                ("Alertmanager", self.monitoring.alertmanager_url),
                ("Kubernetes API", f"{self.kube.url} (the sandbox emulator)"),
            ]
        return shown

    # --- lifecycle -------------------------------------------------------------------------

    async def before_worker(self) -> None:
        if self.with_inbox:
            self.escalations.start()
            self.on_stop(lambda: asyncio.to_thread(self.escalations.stop))
        if self.sandbox:
            await self._start_estate()
            await self._start_kafka()
            await asyncio.to_thread(self._stage_loops_live)
        # Briefings go to the configured channel, else to the stack's own inbox (else the log).
        inbox = self.escalations.url if self.with_inbox else None
        self.overrides = replace(
            self.overrides,
            escalation_webhook=self.settings.escalation_webhook or inbox,
            kube_api=self.kube_api,
            aws=aws_containment(self.aws.endpoint_url) if self.aws else None,
            prometheus_url=self.monitoring.prometheus_url if self.monitoring else None,
            kafka_bootstrap=self.kafka.bootstrap if self.kafka else None,
        )

    async def _start_kafka(self) -> None:
        from sandbox.kafka import KafkaBroker, broker_available

        if not broker_available():
            return
        self.kafka = KafkaBroker()
        self.on_stop(lambda: asyncio.to_thread(self.kafka.stop))
        await asyncio.to_thread(self.kafka.start)

    def _stage_loops_live(self) -> None:
        """The estate is there to be healed: each loop nobody has staged yet starts ``live`` (audited).

        A production store starts every loop at ``read_only``; a stage someone set
        (``suture stage``) is left as it is.
        """
        from suture.models import Loop
        from suture.stages import Stage
        from suture.store import AuditStore

        store = AuditStore.from_settings(self.settings)
        try:
            for loop in Loop:
                if not store.stage(loop).configured:
                    store.set_stage(loop, Stage.LIVE, by="sandbox", reason="the drill estate's loops act")
        finally:
            store.close()

    async def _start_estate(self) -> None:
        from sandbox.estate import Estate
        from sandbox.kube import KubeEmulator
        from sandbox.monitoring import Monitoring
        from sandbox.resource_estate import history_writer, seed_resource_estate

        self.kube = KubeEmulator()
        self.on_stop(self.kube.stop)
        await self.kube.start()
        self.kube_api = self.kube.api_client()
        self.estate = Estate(self.kube_api)
        self.on_stop(self.estate.stop)
        await self.estate.start()
        if self.with_aws:
            from sandbox.aws import MotoSandbox

            self.aws = MotoSandbox()
            self.on_stop(lambda: asyncio.to_thread(self.aws.stop))
            await asyncio.to_thread(self.aws.start)
        # The resource fleets exist before Prometheus starts, so their 30 days of
        # history can be written into its TSDB under the IDs moto gave them.
        self.resources = await asyncio.to_thread(seed_resource_estate, self.aws, self.kube_api)
        self.monitoring = Monitoring(
            self.state_dir / "monitoring",
            f"{self.ingress_url}/alerts/alertmanager",
            self.token,
            history=history_writer(self.resources, self.state_dir / "history", time.time),
        )
        self.on_stop(lambda: asyncio.to_thread(self.monitoring.stop))
        await asyncio.to_thread(self.monitoring.start)

    async def stop(self) -> None:
        for exporter in self._exporters.values():
            exporter.stop()
        self._exporters.clear()
        await super().stop()

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
