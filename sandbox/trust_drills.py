"""The earned-trust drills: the same incident seen again and again, and what suture learns from it.

Each drill deploys its own service in the ``trust`` namespace under a policy of its
own (``sandbox/policies/earned-trust.yaml``), so promotions, demotions, exceptions
and track records never reach another drill, and several of these run at once on
one stack next to the other drills. An incident is made to happen again the way it
does in production: the alert clears (the fix, a human, or the fault going away),
then the same bad version is rolled out again or the same dependency fails again,
and Alertmanager sends a new firing episode, which is a new run.

Trust state is read and changed through the same functions as ``suture policy
promotions``, ``suture policy promote`` and ``suture except``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError

from policies.loading import load_policies
from policies.trust import ShadowScore
from sandbox.drill import DRILLS, DrillResult, drill
from sandbox.model import ServiceSpec
from sandbox.reliability_drills import GOOD, SLOW, image, settled
from sandbox.results import drill_result
from sandbox.stack import Stack
from suture import trust_store
from suture.identity import reliability_workflow_id
from suture.models import AlertNotice, ApprovalAnswer, ApprovalDecision, Loop, LoopResult, Mode, Outcome
from workers.approvals import decide
from workers.trust_commands import promote, promotions

NAMESPACE = "trust"
ALERT = "SandboxHighLatency"
ROLLBACK = "k8s.rollback"
ONCALL = "oncall-alice"
RUN_TIMEOUT_S = 120.0
EXCEPTION_S = 20.0
"""How long the expired-exception drill exempts its target: long enough for one run to see it."""

TRUST_DRILLS = frozenset(
    {
        "earned-promotion",
        "demotion-on-undo",
        "novel-signature-under-autonomy",
        "shadow-score",
        "expired-exception",
    }
)
"""Drills of this module: the session's reliability fixture leaves them to their own test file."""


# --- incidents that happen again ------------------------------------------------------------


async def next_run(stack: Stack, service: str, seen: set[str]) -> WorkflowHandle[Any, LoopResult]:
    """The run of the next firing episode of the service's latency alert (one not in ``seen``)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    filters = _filters(service)
    async with httpx.AsyncClient(base_url=stack.monitoring.alertmanager_url, timeout=5) as http:
        while time.monotonic() < deadline:
            response = await http.get("/api/v2/alerts", params=filters)
            response.raise_for_status()
            for found in response.json():
                notice = AlertNotice(
                    fingerprint=found["fingerprint"],
                    status="firing",
                    labels=found["labels"],
                    starts_at=found["startsAt"],
                    received_at=found["startsAt"],
                )
                workflow_id = reliability_workflow_id(notice)
                if workflow_id not in seen and await _started(stack, workflow_id):
                    seen.add(workflow_id)
                    return stack.client.get_workflow_handle(workflow_id, result_type=LoopResult)
            await asyncio.sleep(0.3)
    raise TimeoutError(f"no new run of {ALERT} for {NAMESPACE}/{service} within {RUN_TIMEOUT_S:.0f}s")


def _filters(service: str) -> httpx.QueryParams:
    matchers = (f'alertname="{ALERT}"', f'namespace="{NAMESPACE}"', f'service="{service}"')
    return httpx.QueryParams([("filter", matcher) for matcher in matchers])


async def _started(stack: Stack, workflow_id: str) -> bool:
    try:
        await stack.client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return False
    return True


async def quiet(stack: Stack, service: str) -> None:
    """Wait until Alertmanager holds no firing latency alert for the service (the episode ended)."""
    filters = _filters(service).add("active", "true")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    async with httpx.AsyncClient(base_url=stack.monitoring.alertmanager_url, timeout=5) as http:
        while time.monotonic() < deadline:
            response = await http.get("/api/v2/alerts", params=filters)
            response.raise_for_status()
            if not response.json():
                return
            await asyncio.sleep(0.3)
    raise TimeoutError(f"{ALERT} for {NAMESPACE}/{service} never cleared")


async def finished(handle: WorkflowHandle[Any, LoopResult]) -> LoopResult:
    return await asyncio.wait_for(handle.result(), RUN_TIMEOUT_S)


async def awaiting_approval(stack: Stack, workflow_id: str, timeout_s: float = RUN_TIMEOUT_S) -> bool:
    """Whether the run asks for approval within ``timeout_s`` (False when it closes without asking)."""
    handle = stack.client.get_workflow_handle(workflow_id)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = await handle.query("status")
        pending = status["pending_approval"] if isinstance(status, dict) else status.pending_approval
        if pending:
            return True
        if (await handle.describe()).close_time is not None:
            return False
        await asyncio.sleep(0.2)
    return False


async def approve(stack: Stack, workflow_id: str) -> bool:
    asked = await awaiting_approval(stack, workflow_id)
    if asked:
        decision = ApprovalDecision(approver=ONCALL, note="drill: the rollback is right")
        await decide(stack.client, workflow_id, ApprovalAnswer.APPROVE, decision)
    return asked


async def bad_version(stack: Stack, service: str) -> tuple[str, str]:
    """Deploy ``service`` with a slow newest version; the good and the bad image."""
    v1, v2 = image(service, "v1"), image(service, "v2")
    await stack.add_service(ServiceSpec(NAMESPACE, service, {v1: GOOD, v2: SLOW}, [v1, v2]))
    return v1, v2


def _policies(stack: Stack) -> list[Any]:
    return load_policies(stack.policy_dirs)


# --- the drills ---------------------------------------------------------------------------------


@drill(
    "earned-promotion",
    "reliability",
    "resolved",
    "two verified supervised rollbacks earn a promotion; once promoted, the next one acts without approval",
)
async def earned_promotion(stack: Stack, service: str = "promoted") -> DrillResult:
    policy, seen = "trust-earned-promotion", set[str]()
    good, bad = await bad_version(stack, service)
    supervised: list[LoopResult] = []
    asked: list[bool] = []
    early: list[bool] = []
    needed = next(p for p in _policies(stack) if p.name == policy).trust.promote_after
    for _ in range(needed):
        handle = await next_run(stack, service, seen)
        asked.append(await approve(stack, handle.id))
        supervised.append(await finished(handle))
        early.append(_standing(stack, policy).recommended)
        await settled(lambda: stack.estate.current_image(NAMESPACE, service) == good)
        await quiet(stack, service)
        await stack.estate.roll_out(NAMESPACE, service, bad)  # the same bad version, shipped again
    recommended = _standing(stack, policy)
    await asyncio.to_thread(promote, stack.store, _policies(stack), policy, ROLLBACK, ONCALL, "drill")
    final = await finished(await next_run(stack, service, seen))
    checks = {
        f"{needed} supervised runs asked for approval and were verified": all(asked)
        and all(r.outcome == Outcome.RESOLVED and r.mode == Mode.SUPERVISED for r in supervised),
        "no promotion was recommended before the last of them": not any(early[:-1]),
        "promotions recommends the rollback after them": recommended.recommended
        and recommended.supervised_successes == needed,
        "the promoted rollback acted without approval": [(a.type, a.mode) for a in final.actions]
        == [(ROLLBACK, Mode.AUTONOMOUS)]
        and final.approver is None,
        "the good version runs again": await settled(
            lambda: stack.estate.current_image(NAMESPACE, service) == good
        ),
    }
    return drill_result(DRILLS["earned-promotion"], final, checks)


def _standing(stack: Stack, policy: str) -> Any:
    chosen = [p for p in _policies(stack) if p.name == policy]
    return next(p for p in promotions(stack.store, chosen) if p.action == ROLLBACK)


@drill(
    "demotion-on-undo",
    "reliability",
    "rejected",
    "an autonomous rollback fails verification and is undone; the next identical alert waits for approval",
)
async def demotion_on_undo(stack: Stack, service: str = "demoted") -> DrillResult:
    policy, seen = "trust-demotion", set[str]()
    v1, v2 = image(service, "v1"), image(service, "v2")
    spec = ServiceSpec(NAMESPACE, service, {v1: GOOD, v2: GOOD}, [v1, v2], dependency_healthy=False)
    await stack.add_service(spec)
    failed = await finished(await next_run(stack, service, seen))
    briefings = stack.escalations.for_run(failed.workflow_id)
    demoted = [o for o in trust_store.overrides(stack.store) if (o.policy, o.action) == (policy, ROLLBACK)]
    stack.estate.set_dependency(NAMESPACE, service, True)  # the dependency recovers ...
    await quiet(stack, service)
    stack.estate.set_dependency(NAMESPACE, service, False)  # ... and fails again
    handle = await next_run(stack, service, seen)
    waited = await awaiting_approval(stack, handle.id)
    if waited:
        decision = ApprovalDecision(approver=ONCALL, note="drill: the dependency, not the version")
        await decide(stack.client, handle.id, ApprovalAnswer.REJECT, decision)
    again = await finished(handle)
    checks = {
        "the autonomous rollback failed verification and was undone": failed.outcome == Outcome.ESCALATED
        and [(a.type, a.mode, a.compensated) for a in failed.actions] == [(ROLLBACK, Mode.AUTONOMOUS, True)],
        "the class is demoted to supervised by suture": [(o.mode, o.by) for o in demoted]
        == [(str(Mode.SUPERVISED), "suture")],
        "the briefing announces the demotion": bool(
            briefings and any("demoted to supervised" in note for note in briefings[0]["trust"])
        ),
        "the next identical alert waited for approval": waited and again.mode == Mode.SUPERVISED,
        "nothing acted without a human": again.actions == [],
    }
    return drill_result(DRILLS["demotion-on-undo"], again, checks)


@drill(
    "novel-signature-under-autonomy",
    "reliability",
    "escalated",
    "an autonomous policy meets a signature it never saw succeed; a human gets it, with the nearest past "
    "incidents",
)
async def novel_signature(stack: Stack) -> DrillResult:
    familiar, unfamiliar, seen = "familiar", "unfamiliar", set[str]()
    await bad_version(stack, familiar)
    past = await finished(await next_run(stack, familiar, seen))  # suture has fixed one of these before
    await bad_version(stack, unfamiliar)
    run = await finished(await next_run(stack, unfamiliar, seen))
    briefings = stack.escalations.for_run(run.workflow_id)
    nearest = briefings[0]["nearest_incidents"] if briefings else []
    checks = {
        "a past incident was resolved first": past.outcome == Outcome.RESOLVED,
        "no action under the autonomous policy": run.actions == [] and run.mode == Mode.AUTONOMOUS,
        "the briefing says the signature is novel": bool(
            briefings and "novel incident" in briefings[0]["reason"]
        ),
        "the briefing lists the nearest past incidents": bool(nearest) and not nearest[0].startswith("none"),
        "each names its run and what resolved it": all(": " in item for item in nearest),
    }
    return drill_result(DRILLS["novel-signature-under-autonomy"], run, checks)


@drill(
    "shadow-score",
    "reliability",
    "dry_run",
    "a dry-run rollback for a fault that goes away by itself scores 'acting would not have helped'",
)
async def shadow_score(stack: Stack, service: str = "shadowed") -> DrillResult:
    policy = "trust-shadow"
    v1, v2 = image(service, "v1"), image(service, "v2")
    spec = ServiceSpec(NAMESPACE, service, {v1: GOOD, v2: GOOD}, [v1, v2], dependency_healthy=False)
    await stack.add_service(spec)
    handle = await next_run(stack, service, set())
    await _until_audited(stack, handle.id, "dry_run")
    stack.estate.set_dependency(NAMESPACE, service, True)  # the fault goes away by itself
    run = await finished(handle)
    shadow = [entry for entry in stack.store.events(run.workflow_id) if entry.step == "shadow"]
    records = trust_store.track_records(stack.store, policy)
    checks = {
        "nothing was rolled back": stack.estate.current_image(NAMESPACE, service) == v2 and run.actions == [],
        "the shadow score is 'acting would not have helped'": [
            str(entry.evidence[0].value) for entry in shadow
        ]
        == [str(ShadowScore.NOT_HELPFUL)],
        "the track record counts it": [(r.dry_runs, r.shadow_not_helpful) for r in records] == [(1, 1)],
    }
    return drill_result(DRILLS["shadow-score"], run, checks)


async def _until_audited(stack: Stack, workflow_id: str, step: str) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not any(e.step == step for e in await asyncio.to_thread(stack.store.events, workflow_id)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{workflow_id} never reached {step}")
        await asyncio.sleep(0.2)


@drill(
    "expired-exception",
    "reliability",
    "resolved",
    "an exempted target escalates; once the exception has expired, the same alert acts",
)
async def expired_exception(stack: Stack, service: str = "exempted") -> DrillResult:
    target, seen = f"{NAMESPACE}/{service}", set[str]()
    until = datetime.now(UTC) + timedelta(seconds=EXCEPTION_S)
    freeze = "drill: change freeze"
    await asyncio.to_thread(
        trust_store.add_exception, stack.store, Loop.RELIABILITY, target, ONCALL, freeze, until
    )
    good, bad = await bad_version(stack, service)
    exempt = await finished(await next_run(stack, service, seen))
    await stack.estate.roll_out(NAMESPACE, service, good)  # the human who got the briefing rolls back
    await quiet(stack, service)
    await asyncio.sleep(max((until - datetime.now(UTC)).total_seconds(), 0.0) + 0.5)
    listed = trust_store.exceptions(stack.store, datetime.now(UTC))
    await stack.estate.roll_out(NAMESPACE, service, bad)  # the same bad version, after the freeze
    acted = await finished(await next_run(stack, service, seen))
    checks = {
        "the exempted target escalated without action": exempt.outcome == Outcome.ESCALATED
        and exempt.actions == []
        and "exempt from actions" in exempt.reason,
        "the exception is listed as expired": [e.active for e in listed if e.target == target] == [False],
        "after it expired the same alert rolled back": [(a.type, a.mode) for a in acted.actions]
        == [(ROLLBACK, Mode.AUTONOMOUS)],
        "the good version runs again": await settled(
            lambda: stack.estate.current_image(NAMESPACE, service) == good
        ),
    }
    return drill_result(DRILLS["expired-exception"], acted, checks)
