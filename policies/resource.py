"""The resource loop's policy and its judgement of waste: pure, so a sweep replays identically.

Waste is a persistent condition, not a spike, so the judgement is conservative
and reads the whole window: a workload is idle only when a high percentile of its
utilisation stayed under the bar for 30 days, and a workload whose maximum (or
its daily rhythm) shows bursts is protected however low its mean. The gates come
from the domain: no destructive action on less than 30 days of history; none at
all while fewer than 95% of the fleet carry owner and env tags (untagged
resources cannot be routed to an owner, so they get an escalation asking for
tags, never an action); at most 5% of the fleet acted on per day, counted across
sweeps; production untouched unless a policy says otherwise. New policies start
in dry-run.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, field_validator, model_validator

from policies.durations import Seconds
from policies.prices import PriceTable
from policies.schema import ActionStep, Approval, Notify, PolicyModel, check_tier_channels
from policies.trust import Trust
from suture.fleet import (
    ENV_TAG,
    Finding,
    UtilisationSummary,
    WasteClass,
    Workload,
    WorkloadKind,
)
from suture.models import HealthCheck, Loop, Mode, PlannedAction

DAY = 86400.0
MIN_HISTORY_DAYS = 30.0
"""No destructive action on a workload with less history than this, whatever a policy says."""
MIN_TAG_COVERAGE = 0.95
"""Below this share of owner/env-tagged workloads, the sweep takes no destructive action at all."""
DAILY_CAP = 0.05
"""At most this share of the fleet is acted on per day, counted across sweeps."""
ACTING = (Mode.SUPERVISED, Mode.AUTONOMOUS)


class ResourceMatch(PolicyModel):
    """Which workloads a policy governs: every key given must equal the workload's tag or label.

    ``kind`` (``ec2-instance`` or ``deployment``) is matched like a label.
    """

    kind: WorkloadKind | None = None
    labels: dict[str, str] = {}

    def accepts(self, labels: Mapping[str, str]) -> bool:
        if self.kind is not None and labels.get("kind") != self.kind:
            return False
        return all(labels.get(key) == value for key, value in self.labels.items())


class WasteRules(PolicyModel):
    """Thresholds on utilisation ratios (0..1 of what the workload holds) over the window."""

    idle_below: float = Field(default=0.05, gt=0.0, le=1.0)
    """Idle when the 95th percentile stays below this for the whole window."""
    overprovisioned_below: float = Field(default=0.4, gt=0.0, le=1.0)
    """Over-provisioned when the 95th percentile of usage is below this share of the request."""
    headroom: float = Field(default=1.3, ge=1.0)
    """A right-sized request is the 95th percentile of usage times this."""
    burst_above: float = Field(default=0.6, gt=0.0, le=1.0)
    """A maximum above this marks the workload bursty: protected, however low its mean."""
    periodic_days: float = Field(default=0.2, ge=0.0, le=1.0)
    """Bursts on at least this share of the days mark it periodic (a nightly job): protected."""
    min_history: Seconds = MIN_HISTORY_DAYS * DAY

    @model_validator(mode="after")
    def _history_floor(self) -> WasteRules:
        if self.min_history < MIN_HISTORY_DAYS * DAY:
            raise ValueError(
                f"min_history cannot be below {MIN_HISTORY_DAYS:.0f}d: waste is judged on 30 days"
            )
        return self


class ResourceVerification(PolicyModel):
    """After ``window``, the resource must still be in its new state and, if given, ``query`` healthy."""

    window: Seconds = 1800.0
    query: str | None = None
    condition: str = "> 0"
    max_staleness: Seconds = 120.0

    @field_validator("condition")
    @classmethod
    def _condition_is_comparison(cls, value: str) -> str:
        _comparison(value)
        return value

    def health_check(self) -> HealthCheck | None:
        if self.query is None:
            return None
        operator, threshold = _comparison(self.condition)
        return HealthCheck(
            query=self.query, operator=operator, threshold=threshold, max_staleness_s=self.max_staleness
        )


class ResourcePolicy(PolicyModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    loop: Literal[Loop.RESOURCE] = Loop.RESOURCE
    description: str = ""
    match: ResourceMatch = ResourceMatch()
    finding: Literal["idle", "overprovisioned"]
    mode: Mode = Mode.DRY_RUN
    """New policies start in dry-run: they record what they would have done and its price."""
    rules: WasteRules = WasteRules()
    actions: list[ActionStep] = Field(min_length=1, max_length=1)
    allow_production: bool = False
    production: list[str] = ["production", "prod"]
    """Values of the env tag that mean production."""
    verify: ResourceVerification = ResourceVerification()
    approval: Approval | None = None
    notify: Notify | None = None
    cooldown: Seconds = 86400.0
    trust: Trust | None = None
    """Earned trust (see :mod:`policies.trust`); omitted, its defaults apply."""
    version: str = ""

    @model_validator(mode="after")
    def _supervised_needs_approvers(self) -> ResourcePolicy:
        if self.mode == Mode.SUPERVISED and self.approval is None:
            raise ValueError("mode 'supervised' needs an 'approval' block with approvers")
        check_tier_channels(self.approval, self.notify)
        return self


# --- judging one workload ----------------------------------------------------------------


@dataclass(frozen=True)
class Judgement:
    waste: WasteClass
    reason: str
    finding: Finding | None = None


def primary_resource(workload: Workload, summaries: Mapping[str, UtilisationSummary]) -> str:
    """The resource whose utilisation says whether the workload is used: GPU when it has one."""
    return "gpu" if "gpu" in summaries else "cpu"


def judge_workload(
    workload: Workload,
    summaries: Mapping[str, UtilisationSummary],
    policies: Sequence[ResourcePolicy],
    prices: PriceTable,
    sweep_id: str,
) -> Judgement:
    """Classify one workload and, when a policy would act on it, build the finding."""
    if not workload.tagged:
        return Judgement(WasteClass.UNTAGGED, f"{workload.key} lacks an owner or env tag")
    if workload.state and workload.state != "running":
        return Judgement(WasteClass.STOPPED, f"{workload.key} is {workload.state}: nothing to reclaim")
    usage = summaries.get(primary_resource(workload, summaries))
    if usage is None:
        return Judgement(WasteClass.NO_DATA, f"no utilisation history for {workload.key}")
    labels = {**workload.labels, "kind": str(workload.kind)}
    governing = [policy for policy in policies if policy.match.accepts(labels)]
    if not governing:
        return Judgement(WasteClass.IN_USE, "no resource policy governs it")
    rules = governing[0].rules
    if usage.history_days * DAY < rules.min_history:
        return Judgement(
            WasteClass.TOO_YOUNG,
            f"{usage.history_days:.1f} days of history, fewer than {rules.min_history / DAY:.0f}",
        )
    if not any(_looks_wasteful(policy, workload, usage) for policy in governing):
        return Judgement(WasteClass.IN_USE, f"95th percentile {usage.p95:.0%}: in use")
    if usage.max >= rules.burst_above or usage.burst_days >= rules.periodic_days:
        return Judgement(
            WasteClass.BURSTY_PROTECTED,
            f"bursts to {usage.max:.0%} (on {usage.burst_days:.0%} of days): "
            "periodic or bursty work is protected",
        )
    for policy in governing:
        judged = _judge_under(policy, workload, summaries, usage, prices, sweep_id)
        if judged is not None:
            return judged
    return Judgement(WasteClass.IN_USE, f"95th percentile {usage.p95:.0%}: in use")


def _looks_wasteful(policy: ResourcePolicy, workload: Workload, usage: UtilisationSummary) -> bool:
    """Whether the percentile alone would make it a candidate under ``policy``."""
    if policy.finding == "idle":
        return usage.p95 < policy.rules.idle_below
    return workload.kind == WorkloadKind.DEPLOYMENT and usage.p95 < policy.rules.overprovisioned_below


def _judge_under(
    policy: ResourcePolicy,
    workload: Workload,
    summaries: Mapping[str, UtilisationSummary],
    usage: UtilisationSummary,
    prices: PriceTable,
    sweep_id: str,
) -> Judgement | None:
    rules = policy.rules
    if policy.finding == "idle" and usage.p95 < rules.idle_below:
        waste = WasteClass.IDLE
        why = (
            f"idle: 95th percentile {usage.p95:.1%} < {rules.idle_below:.0%} "
            f"for {usage.history_days:.0f} days"
        )
    elif (
        policy.finding == "overprovisioned"
        and workload.kind == WorkloadKind.DEPLOYMENT
        and usage.p95 < rules.overprovisioned_below
    ):
        waste = WasteClass.OVERPROVISIONED
        why = (
            f"over-provisioned: uses {usage.p95:.0%} of its requests "
            f"(95th percentile, {usage.history_days:.0f} days)"
        )
    else:
        return None
    if workload.labels.get(ENV_TAG) in policy.production and not policy.allow_production:
        return Judgement(
            WasteClass.PRODUCTION_PROTECTED,
            f"{why}; but env={workload.labels.get(ENV_TAG)} and policy {policy.name} leaves production alone",
        )
    step = policy.actions[0]
    params, savings_hour = _action_params(step, workload, summaries, rules, prices)
    burn = prices.burn_hour(workload) or 0.0
    action = PlannedAction(
        type=step.type,
        target=workload.target,
        params={**step.params, **params},
        mode=policy.mode,
        idempotency_key=f"{sweep_id}:{step.type}:{workload.target}",
    )
    finding = Finding(
        workload=workload,
        waste=waste,
        policy=policy.name,
        policy_version=policy.version,
        mode=policy.mode,
        action=action,
        burn_usd_hour=round(burn, 4),
        savings_usd_month=prices.per_month(savings_hour),
        reason=why,
        p95=usage.p95,
        max=usage.max,
        history_days=usage.history_days,
        resource=usage.resource,
    )
    return Judgement(waste, why, finding)


def _action_params(
    step: ActionStep,
    workload: Workload,
    summaries: Mapping[str, UtilisationSummary],
    rules: WasteRules,
    prices: PriceTable,
) -> tuple[dict[str, object], float]:
    """The parameters the action needs and the $/hour it saves."""
    if workload.kind == WorkloadKind.EC2_INSTANCE:
        return {"region": workload.region}, prices.instance_hour(workload.instance_type) or 0.0
    per_replica = prices.request_hour(workload.cpu_request_cores, workload.memory_request_gib)
    if step.type == "k8s.right_size":
        requests = right_sized(workload, summaries, rules)
        new_cpu = sum(item["cpu_cores"] for item in requests.values())
        new_memory = sum(item["memory_gib"] for item in requests.values())
        saved = per_replica - prices.request_hour(new_cpu, new_memory)
        return {"requests": requests}, max(0.0, saved) * workload.replicas
    replicas = int(step.params.get("replicas", 0))
    return {"replicas": replicas}, max(0, workload.replicas - replicas) * per_replica


def right_sized(
    workload: Workload, summaries: Mapping[str, UtilisationSummary], rules: WasteRules
) -> dict[str, dict[str, float]]:
    """Per container, requests scaled to the 95th percentile of use plus headroom, never up."""
    factors = {}
    for resource in ("cpu", "memory"):
        usage = summaries.get(resource)
        factors[resource] = 1.0 if usage is None else min(1.0, usage.p95 * rules.headroom)
    return {
        container.name: {
            "cpu_cores": _round_up(container.cpu_cores * factors["cpu"], 0.05),
            "memory_gib": _round_up(container.memory_gib * factors["memory"], 0.125),
        }
        for container in workload.containers
    }


def _round_up(value: float, step: float) -> float:
    return round(max(step, math.ceil(value / step - 1e-9) * step), 3)


# --- judging the fleet ------------------------------------------------------------------------


@dataclass
class FleetJudgement:
    fleet_size: int
    tagged: int
    counts: dict[str, int] = field(default_factory=dict)
    untagged: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    acted_today: int = 0
    """Workloads of this fleet, whatever their state now, that a run acted on today."""


def judge_fleet(
    workloads: Iterable[Workload],
    summaries: Mapping[str, Mapping[str, UtilisationSummary]],
    policies: Sequence[ResourcePolicy],
    prices: PriceTable,
    sweep_id: str,
    acted_today: Collection[str] = (),
) -> FleetJudgement:
    """Classify every workload; keep findings (candidates) only, and counts for the rest.

    ``acted_today`` names the targets (``kind:scope/name``) a run acted on today: they
    count against the daily cap and are no candidates again.
    """
    judged = FleetJudgement(fleet_size=0, tagged=0)
    for workload in workloads:
        judged.fleet_size += 1
        judged.tagged += workload.tagged
        acted = str(workload.target) in acted_today
        judged.acted_today += acted
        verdict = judge_workload(workload, summaries.get(workload.key, {}), policies, prices, sweep_id)
        judged.counts[verdict.waste] = judged.counts.get(verdict.waste, 0) + 1
        if verdict.waste == WasteClass.UNTAGGED:
            judged.untagged.append(workload.key)
        if verdict.finding is not None and not acted:
            judged.findings.append(verdict.finding)
    judged.findings.sort(key=lambda item: (-item.savings_usd_month, item.workload.key))
    return judged


# --- the sweep's gates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GatedCandidate:
    finding: Finding
    mode: Mode
    note: str = ""


@dataclass
class SweepGates:
    tag_coverage: float
    daily_cap: int
    acted_today: int
    candidates: list[GatedCandidate]
    reason: str


def daily_cap(fleet_size: int) -> int:
    """How many workloads of a fleet may be acted on in one day."""
    return math.floor(fleet_size * DAILY_CAP + 1e-9)


def gate_sweep(fleet_size: int, tagged: int, findings: Sequence[Finding], acted_today: int) -> SweepGates:
    """Apply tag coverage and the daily cap; what may not act is kept as dry-run, with the reason.

    Findings come largest saving first, so the cap spends itself where the money is.
    """
    coverage = tagged / fleet_size if fleet_size else 1.0
    cap = daily_cap(fleet_size)
    room = max(0, cap - acted_today)
    gated = []
    for finding in findings:
        if finding.mode not in ACTING:
            gated.append(GatedCandidate(finding, finding.mode))
        elif coverage < MIN_TAG_COVERAGE:
            gated.append(
                GatedCandidate(
                    finding,
                    Mode.DRY_RUN,
                    f"tag coverage {coverage:.1%} is below {MIN_TAG_COVERAGE:.0%}: no destructive action",
                )
            )
        elif room == 0:
            gated.append(
                GatedCandidate(
                    finding,
                    Mode.DRY_RUN,
                    f"daily cap reached: {cap} of {fleet_size} workloads ({DAILY_CAP:.0%}) per day",
                )
            )
        else:
            room -= 1
            gated.append(GatedCandidate(finding, finding.mode))
    acting = sum(candidate.mode in ACTING for candidate in gated)
    reason = (
        f"{fleet_size} workloads, tag coverage {coverage:.1%}, {len(findings)} candidates, "
        f"{acting} to act on (cap {cap}/day, {acted_today} acted on today)"
    )
    return SweepGates(coverage, cap, acted_today, gated, reason)


def _comparison(condition: str) -> tuple[str, float]:
    for operator in ("<=", ">=", "==", "!=", "<", ">"):
        if condition.strip().startswith(operator):
            try:
                return operator, float(condition.strip()[len(operator) :])
            except ValueError:
                break
    raise ValueError(f"{condition!r} is not a condition; write it like '< 0.5' or '>= 0.99'")
