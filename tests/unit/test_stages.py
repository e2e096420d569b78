"""Activation stages: the cap, the gates, and the stage kept (and audited) in the store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from activities.governance import Governance
from suture.audit_chain import AuditKey
from suture.models import Loop, Mode
from suture.stages import (
    Stage,
    StageEvidence,
    StagePeriods,
    StageQuery,
    cap_mode,
    gates_for,
    parse_periods,
)
from suture.store import GOVERNANCE, AuditStore

KEY = AuditKey(b"k" * 32)


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    return AuditStore.create(f"sqlite:///{tmp_path / 'suture.db'}", key=KEY)


def test_a_stage_below_live_lowers_an_acting_mode_to_dry_run() -> None:
    assert cap_mode(Stage.READ_ONLY, Mode.AUTONOMOUS) == Mode.DRY_RUN
    assert cap_mode(Stage.DRY_RUN, Mode.SUPERVISED) == Mode.DRY_RUN
    assert cap_mode(Stage.LIVE_SCOPED, Mode.AUTONOMOUS, in_scope=False) == Mode.DRY_RUN
    assert cap_mode(Stage.LIVE_SCOPED, Mode.AUTONOMOUS, in_scope=True) == Mode.AUTONOMOUS
    assert cap_mode(Stage.LIVE, Mode.AUTONOMOUS) == Mode.AUTONOMOUS


def test_the_cap_never_raises_a_mode() -> None:
    for stage in Stage:
        assert cap_mode(stage, Mode.OBSERVE) == Mode.OBSERVE
        assert cap_mode(stage, Mode.DRY_RUN) == Mode.DRY_RUN


def test_a_fresh_store_puts_every_loop_at_the_default_stage(store: AuditStore) -> None:
    state = store.stage(Loop.RESOURCE)

    assert state.stage == Stage.READ_ONLY and not state.configured
    assert store.stage(Loop.RESOURCE, Stage.LIVE).stage == Stage.LIVE


def test_moving_a_stage_is_kept_and_audited_under_the_name_given(store: AuditStore) -> None:
    store.set_stage(Loop.RESOURCE, Stage.DRY_RUN, by="oncall-alice", reason="read path fresh for 30 days")

    state = store.stage(Loop.RESOURCE)
    assert state.stage == Stage.DRY_RUN and state.by == "oncall-alice" and state.configured
    trail = [entry for entry in store.events(GOVERNANCE) if entry.step == "stage_changed"]
    assert len(trail) == 1 and trail[0].actor == "oncall-alice"
    assert "from the default stage to dry_run" in trail[0].detail
    assert store.verify().intact


def test_the_same_stage_again_keeps_when_it_began(store: AuditStore) -> None:
    first = store.set_stage(Loop.SECURITY, Stage.DRY_RUN, by="alice")
    again = store.set_stage(Loop.SECURITY, Stage.DRY_RUN, by="bob")

    assert again.since == first.since and again.by == "alice"
    assert len([e for e in store.events(GOVERNANCE) if e.step == "stage_changed"]) == 1


def test_the_stage_activity_answers_from_the_store_with_the_process_default(store: AuditStore) -> None:
    store.set_stage(Loop.RELIABILITY, Stage.LIVE, by="alice")
    governance = Governance(store, Stage.DRY_RUN)
    environment = ActivityEnvironment()

    assert environment.run(governance.stage, StageQuery(loop=Loop.RELIABILITY)).stage == Stage.LIVE
    assert environment.run(governance.stage, StageQuery(loop=Loop.SECURITY)).stage == Stage.DRY_RUN


def test_advancing_from_dry_run_is_refused_when_logged_actions_exceed_five_percent_a_day() -> None:
    days = [("2026-11-27", 3), ("2026-11-28", 9)]
    evidence = StageEvidence(held_days=20, logged_per_day=days, workloads=100)

    gates = {gate.name: gate for gate in gates_for(Stage.DRY_RUN, evidence, StagePeriods())}

    assert not gates["dry-run rate"].passed
    assert "9 logged actions on 2026-11-28 = 9.0% of 100 workloads" in gates["dry-run rate"].detail
    assert gates["period"].passed and gates["read path"].passed and gates["write permissions"].passed


def test_the_period_and_the_read_path_gate_the_first_step() -> None:
    evidence = StageEvidence(held_days=3, read_blocked=["telemetry freshness: 95s behind, more than 30s"])

    gates = {gate.name: gate for gate in gates_for(Stage.READ_ONLY, evidence, parse_periods("30/14/30"))}

    assert not gates["period"].passed and "held 3.0 of 30 days" in gates["period"].detail
    assert not gates["read path"].passed and "telemetry freshness" in gates["read path"].detail


def test_going_live_needs_an_eighty_percent_closure_rate() -> None:
    held = StageEvidence(held_days=31, closure=(7, 10))
    closed = StageEvidence(held_days=31, closure=(9, 10))

    assert not {g.name: g for g in gates_for(Stage.LIVE_SCOPED, held, StagePeriods())}["closure rate"].passed
    assert all(gate.passed for gate in gates_for(Stage.LIVE_SCOPED, closed, StagePeriods()))
    assert gates_for(Stage.LIVE, closed, StagePeriods()) == []


def test_periods_are_read_as_days_of_each_stage() -> None:
    periods = parse_periods("0.001/0.5/2")

    assert periods.of(Stage.READ_ONLY) == 0.001 and periods.of(Stage.LIVE_SCOPED) == 2.0
    assert timedelta(days=periods.of(Stage.DRY_RUN)) == timedelta(hours=12)
