"""The resource drills: a sweep over one fleet of the estate, and what it did to moto and the emulator.

Each drill starts one sweep scoped to its fleet exactly as ``suture sweep --now``
does (the schedule starts the same workflow), waits for the child run of every
candidate, and checks what a user would check afterwards: which instances are
stopped, what a Deployment requests now, what the on-call channel received. The
drill result's ``savings_usd_month`` is what the runs that acted saved, from the
price table.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes.client import AppsV1Api

from policies.prices import load_price_table
from sandbox.drill import DRILLS, DrillAction, DrillResult, drill
from sandbox.resource_estate import FLEETS, ResourceEstate
from sandbox.stack import Stack
from suture.fleet import SweepResult
from suture.models import ApprovalAnswer, ApprovalDecision, LoopResult, LoopStatus, Mode, Outcome
from workers.approvals import decide
from workers.schedules import SWEEP_SCHEDULE_ID, ensure_sweep_schedule, start_sweep

RUN_TIMEOUT_S = 120.0
APPROVER = "oncall-alice"


async def sweep(stack: Stack, fleet: str, approve: bool = False) -> tuple[SweepResult, list[LoopResult]]:
    """Sweep ``fleet`` now; the finished child runs (approving supervised ones when asked)."""
    # The schedule is made as `suture up` makes it, but paused: its hourly sweep of the whole
    # estate would otherwise land in the middle of some drill, acting on a fleet a drill counts.
    await ensure_sweep_schedule(stack.client, stack.task_queue, paused=True)
    handle = await start_sweep(
        stack.client, stack.task_queue, {"fleet": fleet}, f"resource-sweep-drill-{fleet}"
    )
    result: SweepResult = await asyncio.wait_for(handle.result(), RUN_TIMEOUT_S)
    children = [run for run in result.candidates if run.started]
    runs = await asyncio.gather(*(_child(stack, run.workflow_id, approve) for run in children))
    return result, list(runs)


async def _child(stack: Stack, workflow_id: str, approve: bool) -> LoopResult:
    handle = stack.client.get_workflow_handle(workflow_id, result_type=LoopResult)
    if approve:
        await _approve_when_waiting(stack, workflow_id, handle)
    result: LoopResult = await asyncio.wait_for(handle.result(), RUN_TIMEOUT_S)
    return result


async def _approve_when_waiting(stack: Stack, workflow_id: str, handle: Any) -> None:
    for _ in range(int(RUN_TIMEOUT_S * 4)):
        description = await handle.describe()
        if description.status is not None and description.status.name != "RUNNING":
            return
        status = await handle.query("status", result_type=LoopStatus)
        if status.pending_approval:
            decision = ApprovalDecision(approver=APPROVER, note="drill: right-size it")
            await decide(stack.client, workflow_id, ApprovalAnswer.APPROVE, decision)
            return
        await asyncio.sleep(0.25)


def result_of(
    name: str,
    sweep_result: SweepResult,
    runs: list[LoopResult],
    outcome: str,
    checks: dict[str, bool],
    detail: str = "",
) -> DrillResult:
    registered = DRILLS[name]
    acted = [run for run in runs if run.outcome == Outcome.RESOLVED]
    savings = sum(action.savings_usd_month or 0.0 for run in acted for action in run.actions)
    mttrs = [
        (run.timeline.verified - run.timeline.detected).total_seconds()
        for run in acted
        if run.timeline.verified and run.timeline.detected
    ]
    return DrillResult(
        scenario=name,
        loop="resource",
        expected=registered.expected,
        outcome=outcome,  # type: ignore[arg-type]
        passed=outcome == registered.expected and all(checks.values()),
        workflow_id=sweep_result.workflow_id,
        mttr_s=round(max(mttrs), 2) if mttrs else None,
        verified=bool(acted) and all(run.verdict == "healthy" for run in acted),
        escalated=sweep_result.escalated or any(run.outcome == Outcome.ESCALATED for run in runs),
        human_touched=any(run.human_touched for run in runs),
        actions=[
            DrillAction(
                type=action.type,
                target=action.target,
                mode=action.mode if action.mode != Mode.OBSERVE else Mode.DRY_RUN,  # type: ignore[arg-type]
                compensated=action.compensated,
            )
            for run in runs
            for action in run.actions
        ],
        savings_usd_month=round(savings, 2),
        checks=checks,
        detail=detail or sweep_result.reason,
    )


def _states(stack: Stack, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    ec2 = stack.aws.client("ec2")
    found = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    return {item["InstanceId"]: item["State"]["Name"] for page in found for item in page["Instances"]}


async def states(stack: Stack, ids: list[str]) -> dict[str, str]:
    return await asyncio.to_thread(_states, stack, ids)


def estate(stack: Stack) -> ResourceEstate:
    found: ResourceEstate = stack.resources
    return found


def _loop_outcome(runs: list[LoopResult]) -> str:
    if not runs:
        return "no_action"
    acting = [run for run in runs if run.outcome != Outcome.DRY_RUN]
    if acting and all(run.outcome == Outcome.RESOLVED for run in acting):
        return "resolved"
    if any(run.outcome == Outcome.ESCALATED for run in acting):
        return "escalated"
    return str(acting[0].outcome) if acting else "dry_run"


# --- the drills --------------------------------------------------------------------------------


@drill(
    "idle-gpu-fleet",
    "resource",
    "resolved",
    "a GPU fleet at 4% for 30 days, tagged env=dev, is stopped automatically; production GPUs stay",
)
async def idle_gpu_fleet(stack: Stack) -> DrillResult:
    fleet = estate(stack).instances["idle-gpu-fleet"]
    swept, runs = await sweep(stack, "idle-gpu-fleet")
    now = await states(stack, [*fleet["gpu-dev"], *fleet["gpu-prod"], *fleet["web"][:5]])
    price = load_price_table().instance_hour("p3.2xlarge") or 0.0
    expected_savings = round(len(fleet["gpu-dev"]) * round(price * 730, 2), 2)
    schedule = await stack.client.get_schedule_handle(SWEEP_SCHEDULE_ID).describe()
    stopped = {run.subject.rpartition("/")[2] for run in runs if run.actions}
    result = result_of(
        "idle-gpu-fleet",
        swept,
        runs,
        _loop_outcome(runs),
        {
            "the dev GPU instances are stopped": all(
                now[i] in ("stopped", "stopping") for i in fleet["gpu-dev"]
            ),
            "the production GPU instances still run": all(now[i] == "running" for i in fleet["gpu-prod"]),
            "busy instances still run": all(now[i] == "running" for i in fleet["web"][:5]),
            "only the dev GPU instances were acted on": stopped == set(fleet["gpu-dev"]),
            "every action was ec2.stop_instances": all(
                action.type == "ec2.stop_instances" for run in runs for action in run.actions
            ),
            "the sweep schedule exists with overlap skip": schedule.schedule.policy.overlap.name == "SKIP",
        },
    )
    checks = dict(result.checks)
    checks["savings equal the price table's figure"] = result.savings_usd_month == expected_savings
    return result.model_copy(
        update={
            "checks": checks,
            "passed": result.passed and checks["savings equal the price table's figure"],
        }
    )


@drill(
    "overprovisioned-deployment",
    "resource",
    "resolved",
    "a production Deployment uses 10% of its requests: right-sizing waits for approval, then is verified",
)
async def overprovisioned_deployment(stack: Stack) -> DrillResult:
    resources = estate(stack)
    namespace = resources.namespace("overprovisioned-deployment")
    swept, runs = await sweep(stack, "overprovisioned-deployment", approve=True)
    deployment = await asyncio.to_thread(
        AppsV1Api(stack.kube_api).read_namespaced_deployment, "catalog", namespace
    )
    requests = deployment.spec.template.spec.containers[0].resources.requests or {}  # type: ignore[union-attr]
    return result_of(
        "overprovisioned-deployment",
        swept,
        runs,
        _loop_outcome(runs),
        {
            "one candidate, the Deployment": [run.subject for run in runs] == [f"{namespace}/catalog"],
            "it waited for a human": all(run.mode == Mode.SUPERVISED and run.human_touched for run in runs),
            "its CPU request is lower": requests["cpu"] != "4",
            "the action was k8s.right_size": [a.type for run in runs for a in run.actions]
            == ["k8s.right_size"],
        },
    )


@drill(
    "bursty-batch-job",
    "resource",
    "no_action",
    "a nightly batch job idles 23 hours a day: its nightly bursts protect it",
)
async def bursty_batch_job(stack: Stack) -> DrillResult:
    namespace = estate(stack).namespace("bursty-batch-job")
    swept, runs = await sweep(stack, "bursty-batch-job")
    deployment = await asyncio.to_thread(
        AppsV1Api(stack.kube_api).read_namespaced_deployment, "nightly-etl", namespace
    )
    return result_of(
        "bursty-batch-job",
        swept,
        runs,
        _loop_outcome(runs),
        {
            "no candidate": not swept.candidates,
            "the job is classed bursty and protected": swept.counts.get("bursty_protected") == 1,
            "it still has its replicas": deployment.spec.replicas == 3,
        },
    )


@drill(
    "untagged-resources",
    "resource",
    "escalated",
    "15% of a fleet lacks an owner tag: nothing destructive happens, and a human is asked for tags",
)
async def untagged_resources(stack: Stack) -> DrillResult:
    fleet = estate(stack).instances["untagged-resources"]
    swept, runs = await sweep(stack, "untagged-resources")
    everything = [instance for ids in fleet.values() for instance in ids]
    now = await states(stack, everything)
    briefings = stack.escalations.for_run(swept.workflow_id)
    result = result_of(
        "untagged-resources",
        swept,
        runs,
        "escalated" if swept.escalated and not any(run.actions for run in runs) else _loop_outcome(runs),
        {
            "every instance still runs": all(state == "running" for state in now.values()),
            "the tagged idle ones are only dry-run": all(run.outcome == Outcome.DRY_RUN for run in runs)
            and len(runs) == 2,
            "the briefing asks for tags": any(
                "tag" in str(item.get("title", "")).lower() for item in briefings
            ),
        },
    )
    return result


@drill(
    "young-workload",
    "resource",
    "no_action",
    "idle GPU instances with 12 days of history: too young to judge, nothing is done",
)
async def young_workload(stack: Stack) -> DrillResult:
    fleet = estate(stack).instances["young-workload"]
    swept, runs = await sweep(stack, "young-workload")
    now = await states(stack, fleet["fresh"])
    return result_of(
        "young-workload",
        swept,
        runs,
        _loop_outcome(runs),
        {
            "both are classed too young": swept.counts.get("too_young") == 2,
            "no candidate": not swept.candidates,
            "they still run": all(state == "running" for state in now.values()),
        },
    )


@drill(
    "resource-shadow-score",
    "resource",
    "dry_run",
    "a dry-run policy watches two idle instances: one stopped by hand scores 'right', the other 'undecided'",
)
async def resource_shadow_score(stack: Stack) -> DrillResult:
    watched = estate(stack).instances["shadow-watch"]["watched"]
    await ensure_sweep_schedule(stack.client, stack.task_queue, paused=True)
    handle = await start_sweep(
        stack.client, stack.task_queue, {"fleet": "shadow-watch"}, "resource-sweep-drill-shadow-watch"
    )
    swept: SweepResult = await asyncio.wait_for(handle.result(), RUN_TIMEOUT_S)
    # Within the policy's 8 s shadow window, someone reclaims one of them by hand.
    by_hand = watched[0]
    await asyncio.to_thread(stack.aws.client("ec2").stop_instances, InstanceIds=[by_hand])
    children = [run for run in swept.candidates if run.started]
    runs = await asyncio.gather(*(_child(stack, run.workflow_id, False) for run in children))
    scores = {run.subject.rpartition("/")[2]: _shadow_score(stack, run.workflow_id) for run in runs}
    now = await states(stack, watched)
    return result_of(
        "resource-shadow-score",
        swept,
        list(runs),
        _loop_outcome(list(runs)),
        {
            "both idle instances are dry-run candidates": sorted(scores) == sorted(watched),
            "nothing was acted on": not any(run.actions for run in runs),
            "the one stopped by hand scores right": scores.get(by_hand) == "right",
            "the other scores undecided": scores.get(watched[1]) == "undecided",
            "the other still runs": now.get(watched[1]) == "running",
        },
        detail=f"shadow scores: {scores}",
    )


def _shadow_score(stack: Stack, workflow_id: str) -> str | None:
    for entry in stack.store.events(workflow_id):
        if entry.step == "shadow" and entry.evidence:
            return str(entry.evidence[0].value)
    return None


@drill(
    "action-cap",
    "resource",
    "resolved",
    "40 idle instances in a fleet of 100: 5 (5%) are stopped today, the other 35 recorded as dry-run",
)
async def action_cap(stack: Stack) -> DrillResult:
    fleet = estate(stack).instances["action-cap"]
    swept, runs = await sweep(stack, "action-cap")
    now = await states(stack, fleet["sandbox-box"])
    resolved = [run for run in runs if run.outcome == Outcome.RESOLVED]
    dry = [run for run in runs if run.outcome == Outcome.DRY_RUN]
    size = sum(group.count for group in FLEETS["action-cap"])
    return result_of(
        "action-cap",
        swept,
        runs,
        _loop_outcome(runs),
        {
            "the cap is 5% of the fleet": swept.daily_cap == size * 5 // 100,
            "exactly the cap was acted on": len(resolved) == swept.daily_cap,
            "the rest is dry-run, saying why": len(dry) == 40 - swept.daily_cap
            and all("daily cap" in run.reason for run in dry),
            "as many instances are stopped": sum(state != "running" for state in now.values())
            == swept.daily_cap,
        },
    )
