"""The readiness drills: a loop's stage caps what it does, and the gates refuse to raise it.

Three of them move a loop's stage, which every run of that loop reads, so they are
``exclusive``: they run alone, after the other drills, and put the stage back to
``live`` when they end. The fourth takes one Kubernetes permission away in its own
namespace only (the sandbox's API server answers ``SelfSubjectAccessReview``), so
it runs beside the others.

What each checks is what a user would: the Deployment still runs the version it
ran, the readiness inventory names what is blocked, ``stage advance`` is refused
naming the gate, and the audit trail says what the run would have done.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from activities.readiness import Kind, Readiness, StageRefused, Status, advance
from sandbox.drill import DRILLS, DrillResult, drill
from sandbox.model import ServiceSpec
from sandbox.ports import LOOPBACK, free_port
from sandbox.reliability_drills import GOOD, SLOW, image, settled
from sandbox.results import drill_result
from sandbox.stack import Stack
from suture.fleet import SweepInput, SweepResult
from suture.models import Loop, LoopResult, Outcome
from suture.stages import Stage, StagePeriods
from workers.providers import aws_containment
from workers.readiness_cli import readiness_for

RUN_TIMEOUT_S = 120.0
DRILLER = "sandbox-drill"
COMPRESSED = StagePeriods(read_only=0, dry_run=0, live_scoped=0)
"""The drills do not wait 30 days: every stage's period is over at once."""

READINESS_DRILLS = frozenset(
    {"stage-caps-autonomy", "blocked-write-permission", "stale-telemetry-gate", "dry-run-rate-gate"}
)
"""The readiness drills, which tests/drills/test_readiness_drills.py runs apart from the others."""


def readiness(stack: Stack) -> Readiness:
    """The inventory over the sandbox's own clients, as ``suture readiness`` builds it from settings."""
    return readiness_for(
        stack.settings,
        stack.store,
        kube_api=stack.kube_api,
        aws=aws_containment(stack.aws.endpoint_url) if stack.aws else None,
        prometheus_url=stack.monitoring.prometheus_url,
        policy_dirs=stack.policy_dirs,
    )


@contextlib.contextmanager
def staged(stack: Stack, loop: Loop, stage: Stage) -> Iterator[None]:
    """Hold ``loop`` at ``stage`` for the drill, then put it back to ``live``."""
    stack.store.set_stage(loop, stage, by=DRILLER, reason="drill")
    try:
        yield
    finally:
        stack.store.set_stage(loop, Stage.LIVE, by=DRILLER, reason="drill over")


async def alerted_run(stack: Stack, namespace: str, service: str) -> LoopResult:
    """A new version slows ``service`` down; the reliability run its alert starts, once it ends."""
    v1, v2 = image(service, "v1"), image(service, "v2")
    await stack.add_service(ServiceSpec(namespace, service, {v1: GOOD, v2: SLOW}, [v1, v2]))
    handle = await stack.run_for("SandboxHighLatency", namespace, service)
    result: LoopResult = await asyncio.wait_for(handle.result(), RUN_TIMEOUT_S)
    return result


@drill(
    "stage-caps-autonomy",
    "reliability",
    "dry_run",
    "an autonomous rollback in a loop at dry_run: recorded as what it would have done, nothing touched",
    exclusive=True,
)
async def stage_caps_autonomy(stack: Stack, namespace: str = "shop", service: str = "catalog") -> DrillResult:
    with staged(stack, Loop.RELIABILITY, Stage.DRY_RUN):
        run = await alerted_run(stack, namespace, service)
    trail = stack.store.events(run.workflow_id)
    capped = [entry.detail for entry in trail if entry.step == "stage_capped"]
    checks = {
        "no action taken": run.actions == [],
        "the new version still runs": await settled(
            lambda: stack.estate.current_image(namespace, service) == image(service, "v2")
        ),
        "the run records the mode the stage capped": bool(capped)
        and "would have used autonomous" in capped[0],
        "the trail says what it would have done": any(
            entry.step == "dry_run" and "k8s.rollback" in entry.detail for entry in trail
        ),
        "the reason names the stage": "dry_run stage" in run.reason,
    }
    return drill_result(DRILLS["stage-caps-autonomy"], run, checks)


@drill(
    "blocked-write-permission",
    "reliability",
    "escalated",
    "the worker may not patch Deployments in one namespace: readiness says so, the run escalates untouched",
)
async def blocked_write_permission(
    stack: Stack, namespace: str = "shop-locked", service: str = "ledger-locked"
) -> DrillResult:
    denied = ("apps", "deployments", "patch", namespace)
    stack.kube.server.denied.add(denied)
    try:
        inventory = await asyncio.to_thread(readiness(stack).report, [Loop.RELIABILITY])
        run = await alerted_run(stack, namespace, service)
    finally:
        stack.kube.server.denied.discard(denied)
    rollback = next(line for line in inventory.loops[0].lines if line.check == "write k8s.rollback")
    briefings = stack.escalations.for_run(run.workflow_id)
    lacking = f"patch apps/deployments in {namespace}"
    checks = {
        "readiness marks the rollback's write path blocked": rollback.status == Status.BLOCKED
        and rollback.kind == Kind.WRITE,
        "readiness names the permission": "patch apps/deployments" in rollback.detail,
        "no action taken": run.actions == [],
        "the run names the permission": lacking in run.reason,
        "the briefing names it too": bool(briefings) and lacking in briefings[0]["reason"],
        "the new version still runs": stack.estate.current_image(namespace, service) == image(service, "v2"),
    }
    return drill_result(DRILLS["blocked-write-permission"], run, checks)


class StuckPipeline:
    """A telemetry pipeline that stopped delivering: its target answers, with the same old sample.

    Like a federation or remote-write hop that hangs, it serves the last value with
    the time it was taken, so Prometheus keeps the series (explicit timestamps are
    never marked stale) while its newest sample grows older by the second.
    """

    def __init__(self, metric: str, labels: dict[str, str]) -> None:
        pairs = ",".join(f'{key}="{value}"' for key, value in labels.items())
        series = f"{metric}{{{pairs}}}"

        stamp = int(time.time() * 1000)

        class Page(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"# TYPE {metric} gauge\n{series} 0.1 {stamp}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((LOOPBACK, free_port()), Page)
        self.address = f"{LOOPBACK}:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True, name="lagging-exporter").start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


async def _until_lagging(stack: Stack, bound_s: float) -> None:
    checks = readiness(stack)
    for _ in range(int(bound_s * 4) + 60):
        line = await asyncio.to_thread(checks.telemetry_line)
        if line.measured is not None and line.measured > bound_s:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"the stuck pipeline's samples never got {bound_s:g}s old in Prometheus")


@drill(
    "stale-telemetry-gate",
    "reliability",
    "no_action",
    "a telemetry pipeline stops delivering: readiness blocks reliability on freshness; advance refused",
    exclusive=True,
)
async def stale_telemetry_gate(stack: Stack) -> DrillResult:
    metric = "sandbox_request_latency_p99_seconds"  # what the sandbox's reliability policies read
    pipeline = StuckPipeline(metric, {"namespace": "pipeline", "service": "stuck"})
    stack.monitoring.add_target(pipeline.address, {"job": "stuck-pipeline"})
    try:
        await _until_lagging(stack, stack.settings.telemetry_freshness_s)
        with staged(stack, Loop.RELIABILITY, Stage.READ_ONLY):
            checks_of = readiness(stack)
            inventory = await asyncio.to_thread(checks_of.report, [Loop.RELIABILITY])
            refusal = await _refusal(checks_of, Loop.RELIABILITY)
            kept = stack.store.stage(Loop.RELIABILITY).stage
    finally:
        stack.monitoring.remove_target(pipeline.address)
        pipeline.stop()
    freshness = next(line for line in inventory.loops[0].lines if line.check == "telemetry freshness")
    failing = {gate.name: gate.detail for gate in refusal.failing} if refusal else {}
    checks = {
        "readiness blocks reliability on freshness": freshness.status == Status.BLOCKED,
        "the lag measured is over the bound": (freshness.measured or 0)
        > stack.settings.telemetry_freshness_s,
        "stage advance is refused": refusal is not None,
        "the refusal names the freshness gate": "telemetry freshness" in failing.get("read path", ""),
        "the loop stays read_only": kept == Stage.READ_ONLY,
    }
    return _gate_result("stale-telemetry-gate", checks, str(refusal or "advanced"))


@drill(
    "dry-run-rate-gate",
    "resource",
    "no_action",
    "a sweep at dry_run logs actions on over 5% of workloads a day: stage advance refused, naming the rate",
    exclusive=True,
)
async def dry_run_rate_gate(stack: Stack, fleet: str = "action-cap") -> DrillResult:
    with staged(stack, Loop.RESOURCE, Stage.DRY_RUN):
        runs = await _sweep(stack, fleet)
        evidence = await asyncio.to_thread(readiness(stack).evidence, Loop.RESOURCE, COMPRESSED)
        refusal = await _refusal(readiness(stack), Loop.RESOURCE)
        kept = stack.store.stage(Loop.RESOURCE).stage
    failing = {gate.name: gate.detail for gate in refusal.failing} if refusal else {}
    checks = {
        "the sweep only logged what it would do": bool(runs)
        and all(run.outcome == Outcome.DRY_RUN and not run.actions for run in runs),
        "stage advance is refused": refusal is not None,
        "the refusal names the rate": "% of" in failing.get("dry-run rate", "")
        and "logged actions" in failing.get("dry-run rate", ""),
        "the loop stays at dry_run": kept == Stage.DRY_RUN,
    }
    measured = f"{len(runs)} dry runs; per day {evidence.logged_per_day} of {evidence.workloads} workloads"
    return _gate_result("dry-run-rate-gate", checks, f"{refusal or 'advanced'} (measured: {measured})")


async def _refusal(checks: Readiness, loop: Loop) -> StageRefused | None:
    try:
        await asyncio.to_thread(advance, checks, loop, COMPRESSED, DRILLER)
    except StageRefused as refused:
        return refused
    return None


async def _sweep(stack: Stack, fleet: str) -> list[LoopResult]:
    """One sweep of ``fleet``, as ``suture sweep --now`` starts it; its finished candidate runs."""
    handle = await stack.client.start_workflow(
        "ResourceSweep",
        SweepInput(scope={"fleet": fleet}),
        id=f"resource-sweep-drill-rate-{fleet}-{int(time.time())}",
        task_queue=stack.task_queue,
        result_type=SweepResult,
    )
    swept: SweepResult = await asyncio.wait_for(handle.result(), RUN_TIMEOUT_S)
    started = [run.workflow_id for run in swept.candidates if run.started]
    waits = [
        stack.client.get_workflow_handle(workflow_id, result_type=LoopResult).result()
        for workflow_id in started
    ]
    return list(await asyncio.wait_for(asyncio.gather(*waits), RUN_TIMEOUT_S))


def _gate_result(name: str, checks: dict[str, bool], detail: str) -> DrillResult:
    """A gate drill starts no run of its own: it passes when no action was taken and every check held."""
    return drill_result(DRILLS[name], None, checks, detail=detail)
