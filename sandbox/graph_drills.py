"""The graph drills: storms, blast radius and the poison-message incident, end to end.

Each drill works in a namespace of its own (``fanout``, ``tangle``, ``edge``,
``stream``), so they run beside the other reliability drills on one stack: the
storm correlation counts firing alerts per namespace, and the graph policies
match only their own alerts. Every drill builds its part of the dependency graph
from all three sources (``sandbox/graph/dependencies.yaml``, the
``suture.dev/depends-on`` annotation, the mesh's ``istio_requests_total``) and
refreshes the stored graph before it breaks anything.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sandbox.drill import DRILLS, DrillResult, drill
from sandbox.mesh import annotate_depends_on, mesh_of, refresh_graph_until
from sandbox.model import Behaviour, ServiceSpec
from sandbox.results import drill_result
from sandbox.stack import Stack
from suture.errors import SutureError
from suture.models import Evidence, LoopResult, LoopStatus, Outcome

GOOD = Behaviour(latency_p99_s=0.12)
LEAKY = Behaviour(latency_p99_s=0.12, memory_growth_bytes_per_s=5e8)
RUN_TIMEOUT_S = 120.0
FAILING = 0.3
"""The share of upstream calls a service reports failing while its upstream is broken."""


def image(service: str, version: str) -> str:
    return f"registry.example/{service}:{version}"


async def add_caller(stack: Stack, namespace: str, name: str, failing: Callable[[], bool]) -> None:
    """A healthy, lightly loaded service whose calls upstream fail while ``failing()`` holds."""
    v1 = image(name, "v1")
    await stack.add_service(
        ServiceSpec(namespace, name, {v1: GOOD}, [v1], replicas=1, load_rps=10.0),
        rolled_out_ago=timedelta(days=2),
        extra=lambda: {"sandbox_upstream_error_ratio": FAILING if failing() else 0.0},
    )


async def wire(stack: Stack, namespace: str, upstream: str, callers: dict[str, str]) -> None:
    """Each caller reaches ``upstream`` as its source says: declared, kubernetes or traffic.

    The declared ones are in ``sandbox/graph/dependencies.yaml``; this writes the
    annotations, has the mesh report the traffic, and refreshes the graph until it
    holds every edge.
    """
    mesh = mesh_of(stack)
    for caller, source in callers.items():
        if source == "kubernetes":
            await annotate_depends_on(stack, namespace, caller, [upstream])
        elif source == "traffic":
            mesh.call(f"{namespace}/{caller}", f"{namespace}/{upstream}")
    wanted = [
        (f"{namespace}/{caller}", f"{namespace}/{upstream}", source) for caller, source in callers.items()
    ]
    await refresh_graph_until(stack, wanted)


async def storm_of(
    stack: Stack, alertname: str, namespace: str, services: list[str]
) -> tuple[str, list[LoopResult]]:
    """The storm run's ID and the run every alert of the storm started (each joined it)."""
    handles = await asyncio.gather(*(stack.run_for(alertname, namespace, name) for name in services))
    runs = list(await asyncio.gather(*(asyncio.wait_for(h.result(), RUN_TIMEOUT_S) for h in handles)))
    named = [m.group(1) for run in runs if (m := re.search(r"storm run (\S+):", run.reason))]
    if not named:
        raise SutureError(f"no run of {namespace} joined a storm: {[run.reason for run in runs]}")
    return named[0], runs


def briefings_in(stack: Stack, namespace: str) -> list[dict[str, Any]]:
    return [b for b in stack.escalations.briefings if str(b.get("subject", "")).startswith(f"{namespace}")]


# --- storms ------------------------------------------------------------------------------

STORM_NS = "fanout"
STORM_CALLERS = {
    "web": "declared",
    "mobile": "declared",
    "search": "kubernetes",
    "cart": "kubernetes",
    "ads": "traffic",
    "reviews": "traffic",
}


@drill(
    "shared-dependency-storm",
    "reliability",
    "resolved",
    "six services fail behind one upstream deployed a minute ago; one rollback of the upstream",
)
async def shared_dependency_storm(stack: Stack) -> DrillResult:
    v1, v2 = image("catalog", "v1"), image("catalog", "v2")
    await stack.add_service(
        ServiceSpec(STORM_NS, "catalog", {v1: GOOD, v2: GOOD}, [v1, v2]), rolled_out_ago=timedelta(minutes=1)
    )
    broken = False

    def failing() -> bool:
        return broken and stack.estate.current_image(STORM_NS, "catalog") == v2

    for name in STORM_CALLERS:
        await add_caller(stack, STORM_NS, name, failing)
    await wire(stack, STORM_NS, "catalog", STORM_CALLERS)
    broken = True
    storm_id, joined = await storm_of(stack, "SandboxUpstreamErrors", STORM_NS, list(STORM_CALLERS))
    storm_handle = stack.client.get_workflow_handle(storm_id, result_type=LoopResult)
    run = await asyncio.wait_for(storm_handle.result(), RUN_TIMEOUT_S)
    root = stack.client.get_workflow_handle(f"{storm_id}-root")
    evidence = (await root.query("status", result_type=LoopStatus)).evidence
    checks = {
        "one action, a rollback of the upstream": [(a.type, a.target) for a in run.actions]
        == [("k8s.rollback", f"{STORM_NS}/catalog")],
        "the upstream runs its previous version": stack.estate.current_image(STORM_NS, "catalog") == v1,
        "six alerts joined the run on the upstream as evidence": _joined(evidence)
        == sorted(f"{STORM_NS}/{name}" for name in STORM_CALLERS),
        "every downstream run ended joining the storm, none acted": all(
            r.outcome == Outcome.SUPPRESSED and not r.actions for r in joined
        ),
        "at most one briefing": len(briefings_in(stack, STORM_NS)) <= 1,
    }
    briefed = "; ".join(str(b.get("title")) for b in briefings_in(stack, STORM_NS))
    return drill_result(DRILLS["shared-dependency-storm"], run, checks, f"{run.reason}; briefings: {briefed}")


UNCLEAR_NS = "tangle"
UNCLEAR_CALLERS = {"alpha": "declared", "beta": "declared", "gamma": "kubernetes", "delta": "traffic"}


@drill(
    "unclear-root-storm",
    "reliability",
    "escalated",
    "four services fail together and nothing they share changed; one briefing, no action",
)
async def unclear_root_storm(stack: Stack) -> DrillResult:
    v1 = image("store", "v1")
    await stack.add_service(
        ServiceSpec(UNCLEAR_NS, "store", {v1: GOOD}, [v1]), rolled_out_ago=timedelta(days=3)
    )
    broken = False
    for name in UNCLEAR_CALLERS:
        await add_caller(stack, UNCLEAR_NS, name, lambda: broken)
    await wire(stack, UNCLEAR_NS, "store", UNCLEAR_CALLERS)
    broken = True
    storm_id, joined = await storm_of(stack, "SandboxUpstreamErrors", UNCLEAR_NS, list(UNCLEAR_CALLERS))
    run = await asyncio.wait_for(
        stack.client.get_workflow_handle(storm_id, result_type=LoopResult).result(), RUN_TIMEOUT_S
    )
    briefings = briefings_in(stack, UNCLEAR_NS)
    checks = {
        "no action anywhere": run.actions == [] and all(not r.actions for r in joined),
        "one briefing for the storm": len(briefings) == 1 and briefings[0].get("workflow_id") == storm_id,
        "the briefing names every service": bool(briefings)
        and all(f"{UNCLEAR_NS}/{name}" in briefings[0].get("scope", "") for name in UNCLEAR_CALLERS),
        "every alert is answered": all(r.outcome == Outcome.SUPPRESSED for r in joined),
    }
    return drill_result(DRILLS["unclear-root-storm"], run, checks)


# --- blast radius --------------------------------------------------------------------------

EDGE_NS = "edge"
GATEWAY_CALLERS = {"web": "declared", "mobile": "kubernetes", "partner": "traffic", "admin": "traffic"}
"""Four dependents, two more than the policy allows."""


@drill(
    "wide-blast-radius",
    "reliability",
    "escalated",
    "a restart of a gateway four services call waits for approval; the briefing lists them",
)
async def wide_blast_radius(stack: Stack) -> DrillResult:
    v1, v2 = image("gateway", "v1"), image("gateway", "v2")
    await stack.add_service(ServiceSpec(EDGE_NS, "gateway", {v1: GOOD, v2: LEAKY}, [v1]))
    for name in GATEWAY_CALLERS:
        await add_caller(stack, EDGE_NS, name, lambda: False)
    await wire(stack, EDGE_NS, "gateway", GATEWAY_CALLERS)
    await stack.estate.roll_out(EDGE_NS, "gateway", v2)
    handle = await stack.run_for("SandboxMemoryLeak", EDGE_NS, "gateway")
    waited = await _pending(handle)
    run = await asyncio.wait_for(handle.result(), RUN_TIMEOUT_S)
    briefings = stack.escalations.for_run(run.workflow_id)
    dependents = sorted(f"{EDGE_NS}/{name}" for name in GATEWAY_CALLERS)
    checks = {
        "the restart waited for approval": waited,
        "nothing was restarted": run.actions == [],
        "the briefing lists the four dependents": bool(briefings)
        and sorted(briefings[0].get("dependents", [])) == dependents,
    }
    return drill_result(DRILLS["wide-blast-radius"], run, checks)


# --- the poison-message incident ---------------------------------------------------------

STREAM_NS = "stream"
LAG_BASELINE = 20


@drill(
    "kafka-poison-messages",
    "reliability",
    "resolved",
    "a malformed batch stops the order consumer; quarantined to a dead-letter topic, consumer scaled",
)
async def kafka_poison_messages(stack: Stack) -> DrillResult:
    from sandbox.kafka_estate import OrderStream, dead_letters

    if stack.kafka is None:
        raise SutureError("the poison-message drill needs the broker: pip install '.[sandbox]'")
    stream = OrderStream(stack.kafka.bootstrap, lambda: stack.estate.replicas(STREAM_NS, "order-consumer"))
    for name, extra in (("order-producer", None), ("order-consumer", stream.metrics)):
        v1 = image(name, "v1")
        spec = ServiceSpec(STREAM_NS, name, {v1: GOOD}, [v1], replicas=2)
        await stack.add_service(spec, rolled_out_ago=timedelta(days=1), extra=extra)
    await asyncio.to_thread(stream.start)
    stack.on_stop(lambda: asyncio.to_thread(stream.stop))
    mesh_of(stack).call(f"{STREAM_NS}/order-producer", f"{STREAM_NS}/order-consumer")
    try:
        await _until(lambda: stream.produced_end > 40 and stream.lag < LAG_BASELINE, "the stream to flow")
        poison = await asyncio.to_thread(stream.inject_poison, 5)
        handle = await stack.run_for("SandboxConsumerLag", STREAM_NS, "order-consumer")
        run = await asyncio.wait_for(handle.result(), RUN_TIMEOUT_S)
        quarantined = await asyncio.to_thread(dead_letters, stack.kafka.bootstrap)
        lag = stream.lag
    finally:
        await asyncio.to_thread(stream.stop)
    checks = {
        "quarantine, then scale the consumer": [(a.type, a.target, a.compensated) for a in run.actions]
        == [
            ("kafka.quarantine", f"{STREAM_NS}/order-consumer", False),
            ("k8s.scale", f"{STREAM_NS}/order-consumer", False),
        ],
        "the poison batch is in the dead-letter topic with its offsets": [o for o, _ in quarantined]
        == poison,
        "lag is back under its baseline": lag < LAG_BASELINE,
        "the consumer runs more replicas": (stack.estate.replicas(STREAM_NS, "order-consumer") or 0) > 2,
    }
    detail = f"poison offsets {poison}; lag {lag} after: {run.reason}"
    return drill_result(DRILLS["kafka-poison-messages"], run, checks, detail)


# --- helpers -------------------------------------------------------------------------------


def _joined(evidence: list[Evidence]) -> list[str]:
    return sorted(str(item.value) for item in evidence if item.note == "joined this storm run")


async def _pending(handle: Any) -> bool:
    """Whether the run came to wait for approval (it may time out right after)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        status = await handle.query("status", result_type=LoopStatus)
        if status.pending_approval:
            return True
        if status.step == "closed":
            return False
        await asyncio.sleep(0.3)
    return False


async def _until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f}s for {what}")
        await asyncio.sleep(0.2)
