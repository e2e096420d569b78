"""Earned trust: the record folds audited facts, rebuilds the same, and the gate grants nothing unearned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from policies.plan import Plan, PlanOutcome
from policies.trust import (
    ASSESSED,
    SHADOW,
    TRUST_EVIDENCE,
    AssessedIncident,
    ClassStanding,
    Feedback,
    IncidentSignature,
    Novelty,
    PastIncident,
    Trust,
    TrustAssessment,
    TrustQuery,
    gate,
    promotion_for,
)
from suture import trust_store
from suture.audit_chain import AuditKey
from suture.models import (
    ActionRecord,
    AuditEntry,
    Evidence,
    Loop,
    LoopResult,
    Mode,
    Outcome,
    PlannedAction,
    Target,
    Timeline,
    Verdict,
)
from suture.store import AuditStore

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
SIGNATURE = IncidentSignature(
    loop=Loop.RELIABILITY,
    alert="HighLatency",
    service="shop/checkout",
    change="rollout",
    diagnosis="bad-rollout",
)
POLICY = "rollback-latency"


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    return AuditStore.create(f"sqlite:///{tmp_path / 'audit.db'}", key=AuditKey(b"k" * 32))


def close(store: AuditStore, run: str, outcome: Outcome, mode: Mode, **extra: object) -> LoopResult:
    """Audit a run's assessment and close it, as a loop and ``audit.close_run`` do."""
    incident = AssessedIncident(policy=POLICY, actions=["k8s.rollback"], signature=SIGNATURE)
    evidence = Evidence(source=TRUST_EVIDENCE, query=ASSESSED, value=incident.model_dump_json(), at=NOW)
    store.record(
        AuditEntry(
            workflow_id=run,
            seq=1,
            loop=Loop.RELIABILITY,
            subject="shop/checkout",
            step=ASSESSED,
            detail="assessed",
            evidence=[evidence],
            at=NOW,
        )
    )
    if extra.pop("shadow", None):
        score = Evidence(source=TRUST_EVIDENCE, query=SHADOW, value="not_helpful", at=NOW)
        store.record(
            AuditEntry(
                workflow_id=run,
                seq=2,
                loop=Loop.RELIABILITY,
                subject="shop/checkout",
                step=SHADOW,
                detail="cleared",
                evidence=[score],
                at=NOW,
            )
        )
    acted = NOW + timedelta(seconds=5)
    result = LoopResult(
        workflow_id=run,
        loop=Loop.RELIABILITY,
        subject="shop/checkout",
        outcome=outcome,
        mode=mode,
        reason="drill",
        policy=POLICY,
        actions=[ActionRecord(type="k8s.rollback", target="shop/checkout", mode=mode, **extra)]  # type: ignore[arg-type]
        if outcome != Outcome.DRY_RUN
        else [],
        timeline=Timeline(
            detected=NOW,
            acted=acted,
            verified=acted + timedelta(seconds=20),
            closed=acted + timedelta(seconds=21),
        ),
        verdict=Verdict.UNHEALTHY if extra.get("compensated") else None,
        approver="oncall-alice" if mode == Mode.SUPERVISED else None,
    )
    store.close_run(result)
    trust_store.record_closed_run(store, result)
    return result


def test_rebuilding_from_the_audit_trail_gives_the_record_kept_as_runs_closed(store: AuditStore) -> None:
    for number in range(3):
        close(store, f"run-{number}", Outcome.RESOLVED, Mode.SUPERVISED)
    close(store, "run-rejected", Outcome.REJECTED, Mode.SUPERVISED)
    close(store, "run-dry", Outcome.DRY_RUN, Mode.DRY_RUN, shadow=True)
    close(store, "run-failed", Outcome.ESCALATED, Mode.AUTONOMOUS, compensated=True)
    undo = LoopResult(
        workflow_id="undo-run-0",
        loop=Loop.RELIABILITY,
        subject="shop/checkout",
        outcome=Outcome.ROLLED_BACK,
        reason="undone",
        timeline=Timeline(closed=NOW),
        approver="oncall-bob",
    )
    store.close_run(undo)
    trust_store.record_closed_run(store, undo)
    trust_store.record_closed_run(store, undo)  # a retried close counts once
    trust_store.record_feedback(store, "run-1", "oncall-bob", Feedback.USEFUL)
    incremental = trust_store.track_records(store)

    trust_store.rebuild(store)

    assert trust_store.track_records(store) == incremental
    record = incremental[0]
    assert (record.supervised_successes, record.rejections, record.verify_failures, record.undos) == (
        3,
        1,
        1,
        1,
    )
    assert (record.dry_runs, record.shadow_not_helpful, record.feedback_useful) == (1, 1, 1)
    assert record.mean_verify_s == 20.0


def test_an_autonomous_run_that_fails_verification_demotes_its_class_and_says_so(store: AuditStore) -> None:
    close(store, "run-failed", Outcome.ESCALATED, Mode.AUTONOMOUS, compensated=True)

    [override] = trust_store.overrides(store)

    assert (override.policy, override.action, override.mode, override.by) == (
        POLICY,
        "k8s.rollback",
        "supervised",
        "suture",
    )
    assert any(entry.step == "demoted" for entry in store.events("governance"))


def test_a_promotion_is_recommended_only_after_enough_clean_supervised_successes(store: AuditStore) -> None:
    trust = Trust(promote_after=2)
    close(store, "run-1", Outcome.RESOLVED, Mode.SUPERVISED)
    assert not promotion_for(
        POLICY, "k8s.rollback", Mode.SUPERVISED, trust_store.track_records(store), trust
    ).recommended

    close(store, "run-2", Outcome.RESOLVED, Mode.SUPERVISED)
    assert promotion_for(
        POLICY, "k8s.rollback", Mode.SUPERVISED, trust_store.track_records(store), trust
    ).recommended

    close(store, "run-3", Outcome.REJECTED, Mode.SUPERVISED)
    assert not promotion_for(
        POLICY, "k8s.rollback", Mode.SUPERVISED, trust_store.track_records(store), trust
    ).recommended


def test_an_exception_escalates_its_target_until_it_expires(store: AuditStore) -> None:
    trust_store.add_exception(
        store, Loop.RELIABILITY, "shop/checkout", "oncall-alice", "migration", NOW + timedelta(hours=1)
    )
    query = _query(Novelty.OFF)

    assert trust_store.assess(store, query).exception is not None
    later = query.model_copy(update={"at": NOW + timedelta(hours=2)})
    assert trust_store.assess(store, later).exception is None


def _query(novelty: Novelty, declared: bool = True) -> TrustQuery:
    return TrustQuery(
        loop=Loop.RELIABILITY,
        policy=POLICY,
        actions=["k8s.rollback"],
        targets=["shop/checkout"],
        signature=SIGNATURE,
        declared=declared,
        trust=Trust(novelty=novelty),
        at=NOW,
    )


def _plan(mode: Mode) -> Plan:
    action = PlannedAction(
        type="k8s.rollback",
        target=Target(kind="deployment", scope="shop", name="checkout"),
        mode=mode,
        idempotency_key="k",
    )
    return Plan(outcome=PlanOutcome.ACT, mode=mode, reason="bad rollout", actions=[action])


def test_a_never_seen_signature_goes_to_a_human_even_under_an_autonomous_policy() -> None:
    nearest = [
        PastIncident(workflow_id="old", signature="x", shared=3, outcome="resolved", resolution="rolled back")
    ]

    gated = gate(_plan(Mode.AUTONOMOUS), _query(Novelty.ESCALATE), TrustAssessment(nearest=nearest), True)

    assert gated.plan.outcome == PlanOutcome.ESCALATE and gated.novel


def test_a_declared_signature_is_known_and_a_promotion_lifts_supervised_to_autonomous() -> None:
    promoted = TrustAssessment(
        standings=[ClassStanding(action="k8s.rollback", override=Mode.AUTONOMOUS, by="lead")]
    )

    gated = gate(_plan(Mode.SUPERVISED), _query(Novelty.DECLARED), promoted, True)

    assert gated.plan.outcome == PlanOutcome.ACT
    assert [action.mode for action in gated.plan.actions] == [Mode.AUTONOMOUS]


def test_a_signature_seen_only_with_bad_outcomes_goes_to_a_human_whatever_the_novelty_setting() -> None:
    gated = gate(_plan(Mode.AUTONOMOUS), _query(Novelty.OFF), TrustAssessment(bad=2), True)

    assert gated.plan.outcome == PlanOutcome.ESCALATE
