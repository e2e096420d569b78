"""A fake world for workflow tests: activities registered under their real names.

Each fake records its calls, so a test can assert what the loop did and in which
order, and answers from a small script the test sets up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from policies.engine import select_policy
from policies.loading import load_policy_file
from policies.models import Policy, PolicyQuery, PolicySelection
from policies.trust import TrustAssessment, TrustQuery
from suture.models import (
    ActionOutcome,
    AuditEntry,
    Briefing,
    ClaimResult,
    Evidence,
    EvidenceReport,
    EvidenceRequest,
    FinishedRun,
    HealthCheck,
    HealthReport,
    KillSwitchQuery,
    KillSwitchState,
    LoopResult,
    PlannedAction,
    Rollout,
    RolloutHistory,
    RunRef,
    Snapshot,
    Target,
    TargetClaim,
    TargetRelease,
    Verdict,
)
from suture.stages import PermissionQuery, PermissionVerdict, Stage, StageQuery, StageState

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


@dataclass
class FakeBookkeeping:
    """suture's own bookkeeping, faked for every loop: policy, audit, locks, escalation."""

    policies: list[Policy]
    claim_granted: bool = True
    claim_refusal: str = "cooldown: acted 2m ago"
    paused: str | None = None
    """Scope of a pulled kill switch: ``all`` or a loop's name; None when nothing is paused."""
    paused_by: str = "oncall-alice"
    paused_reason: str = "change freeze"
    switch_reads: list[KillSwitchQuery] = field(default_factory=list)
    stage: Stage = Stage.LIVE
    """The activation stage every loop is at; a test may move it (even while a run waits)."""
    stage_reads: list[StageQuery] = field(default_factory=list)
    missing_permissions: list[str] = field(default_factory=list)
    """What ``readiness.write_permissions`` reports the identity lacks."""
    permission_asks: list[PermissionQuery] = field(default_factory=list)
    trust: TrustAssessment = field(default_factory=TrustAssessment)
    """What ``trust.assess`` answers: nothing known (no override, exception or record) by default."""
    trust_queries: list[TrustQuery] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    journal: Path | None = None
    """When set, every call is also appended to this file: a record that outlives the process."""
    audit: list[AuditEntry] = field(default_factory=list)
    briefings: list[Briefing] = field(default_factory=list)
    closed: list[LoopResult] = field(default_factory=list)

    def note(self, name: str, arg: Any) -> None:
        self.calls.append((name, arg))
        if self.journal is not None:
            with self.journal.open("a") as journal:
                journal.write(name + "\n")

    def called(self, name: str) -> list[Any]:
        return [arg for called, arg in self.calls if called == name]

    def bookkeeping_activities(self) -> list[Any]:
        world = self

        @activity.defn(name="policy.select")
        async def select(query: PolicyQuery) -> PolicySelection:
            world.note("policy.select", query)
            governed = [policy for policy in world.policies if policy.loop == query.loop]
            return PolicySelection(policy=select_policy(governed, query.labels), considered=len(governed))

        @activity.defn(name="audit.record")
        async def record(entry: AuditEntry) -> None:
            world.audit.append(entry)

        @activity.defn(name="audit.claim_target")
        async def claim(claim: TargetClaim) -> ClaimResult:
            world.note("audit.claim_target", claim)
            return ClaimResult(
                granted=world.claim_granted, reason="" if world.claim_granted else world.claim_refusal
            )

        @activity.defn(name="audit.release_target")
        async def release(release: TargetRelease) -> None:
            world.note("audit.release_target", release)

        @activity.defn(name="audit.close_run")
        async def close(result: LoopResult) -> None:
            world.closed.append(result)

        @activity.defn(name="notify.escalate")
        async def escalate(briefing: Briefing) -> None:
            world.briefings.append(briefing)

        @activity.defn(name="governance.kill_switch")
        async def kill_switch(query: KillSwitchQuery) -> KillSwitchState:
            world.switch_reads.append(query)
            if world.paused not in ("all", str(query.loop)):
                return KillSwitchState(paused=False)
            return KillSwitchState(
                paused=True, scope=world.paused, by=world.paused_by, reason=world.paused_reason
            )

        @activity.defn(name="governance.stage")
        async def stage(query: StageQuery) -> StageState:
            world.stage_reads.append(query)
            return StageState(
                loop=query.loop, stage=world.stage, since=NOW, by="oncall-alice", configured=True
            )

        @activity.defn(name="trust.assess")
        async def assess(query: TrustQuery) -> TrustAssessment:
            world.trust_queries.append(query)
            return world.trust

        @activity.defn(name="readiness.write_permissions")
        async def permissions(query: PermissionQuery) -> PermissionVerdict:
            world.permission_asks.append(query)
            return PermissionVerdict(missing=list(world.missing_permissions))

        @activity.defn(name="runs.finished_run")
        async def finished_run(ref: RunRef) -> FinishedRun:
            for result in world.closed:
                if result.workflow_id == ref.workflow_id:
                    kind = f"{str(result.loop).capitalize()}Loop"
                    return FinishedRun(
                        workflow_id=ref.workflow_id, workflow_type=kind, status="completed", result=result
                    )
            raise ApplicationError(f"no run {ref.workflow_id!r}", type="TargetNotFound", non_retryable=True)

        return [
            select,
            record,
            claim,
            release,
            close,
            escalate,
            kill_switch,
            stage,
            permissions,
            assess,
            finished_run,
        ]


@dataclass
class FakeWorld(FakeBookkeeping):
    """A cluster and Prometheus that answer from a script."""

    verdicts: list[Verdict] = field(default_factory=lambda: [Verdict.HEALTHY])
    rollout_age: timedelta = timedelta(minutes=3)
    target_missing: bool = False
    pause_after: str | None = None
    """Pull the global kill switch as soon as this action activity has run."""

    def activities(self) -> list[Any]:
        world = self

        @activity.defn(name="prometheus.collect_evidence")
        async def collect(request: EvidenceRequest) -> EvidenceReport:
            world.note("prometheus.collect_evidence", request)
            return EvidenceReport(
                evidence=[Evidence(source="prometheus", query=q, value=0.9, at=NOW) for q in request.queries]
            )

        @activity.defn(name="prometheus.check_health")
        async def check(check: HealthCheck) -> HealthReport:
            world.note("prometheus.check_health", check)
            verdict = world.verdicts.pop(0) if len(world.verdicts) > 1 else world.verdicts[0]
            value = 0.1 if verdict == Verdict.HEALTHY else 0.9
            evidence = (
                []
                if verdict == Verdict.UNKNOWN
                else [Evidence(source="prometheus", query=check.query, value=value, at=NOW)]
            )
            return HealthReport(verdict=verdict, reason=f"fake verdict {verdict}", evidence=evidence)

        @activity.defn(name="k8s.rollout_history")
        async def history(target: Target) -> RolloutHistory:
            world.note("k8s.rollout_history", target)
            # The test server's clock jumps ahead with every skipped timer; age rollouts on it.
            now = activity.info().current_attempt_scheduled_time
            return RolloutHistory(
                target=target,
                current_revision=2,
                rollouts=[
                    Rollout(
                        revision=2,
                        replicaset=f"{target.name}-b",
                        images=["shop:v2"],
                        created_at=now - world.rollout_age,
                    ),
                    Rollout(
                        revision=1,
                        replicaset=f"{target.name}-a",
                        images=["shop:v1"],
                        created_at=NOW - timedelta(days=3),
                    ),
                ],
            )

        @activity.defn(name="k8s.snapshot_deployment")
        async def snapshot(action: PlannedAction) -> Snapshot:
            world.note("k8s.snapshot_deployment", action)
            if world.target_missing:
                raise ApplicationError(
                    "deployment shop/checkout not found", type="TargetNotFound", non_retryable=True
                )
            return Snapshot(action=action, state={"image": "shop:v2", "replicas": 2})

        def doer(name: str) -> Any:
            @activity.defn(name=name)
            async def do(snapshot: Snapshot) -> ActionOutcome:
                world.note(name, snapshot)
                if name == world.pause_after:
                    world.paused = "all"
                return ActionOutcome(action=snapshot.action, changed=True, detail=f"{name} done")

            return do

        doers = [
            doer(name)
            for name in (
                "k8s.rollback_deployment",
                "k8s.restart_deployment",
                "k8s.scale_deployment",
                "k8s.restore_deployment",
            )
        ]
        return [*self.bookkeeping_activities(), collect, check, history, snapshot, *doers]


def load_test_policies(tmp_path: Path, text: str) -> list[Policy]:
    path = tmp_path / "policies.yaml"
    path.write_text(text)
    return load_policy_file(path)
