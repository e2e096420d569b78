"""The audit store: idempotent recording, a tamper-evident chain, per-target locks.

Runs against a SQLite file; set ``SUTURE_TEST_POSTGRES_URL`` (a database the tests
may wipe) to run the same tests against PostgreSQL too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from temporalio.testing import ActivityEnvironment

from activities.audit import AuditActivities
from activities.governance import Governance
from suture.errors import ConfigError
from suture.models import (
    ActionRecord,
    AuditEntry,
    Evidence,
    KillSwitchQuery,
    KillSwitchState,
    Loop,
    LoopResult,
    Mode,
    Outcome,
    TargetClaim,
    TargetRelease,
    Timeline,
)
from suture.store import AuditStore, Base

START = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
POSTGRES_URL = os.environ.get("SUTURE_TEST_POSTGRES_URL")


@dataclass
class FakeClock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", *(["postgresql"] if POSTGRES_URL else [])])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'suture.db'}"
    assert POSTGRES_URL is not None
    wipe = AuditStore.create(POSTGRES_URL, migrate=False)
    with wipe.engine.begin() as connection:
        Base.metadata.drop_all(connection)
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    wipe.close()
    return POSTGRES_URL


@pytest.fixture
def store(store_url: str, clock: FakeClock) -> Iterator[AuditStore]:
    opened = AuditStore.create(store_url, clock=clock)
    yield opened
    opened.close()


def entry(seq: int, workflow_id: str = "reliability-abc-1", **changes: object) -> AuditEntry:
    fields: dict[str, object] = {
        "workflow_id": workflow_id,
        "seq": seq,
        "loop": Loop.RELIABILITY,
        "subject": "shop/checkout",
        "step": "detected",
        "detail": f"step {seq}",
        "evidence": [
            Evidence(source="prometheus", query="latency_p99", value=0.93, at=START, note="fired"),
        ],
        "at": START + timedelta(seconds=seq),
    }
    return AuditEntry.model_validate(fields | changes)


def result(workflow_id: str, outcome: Outcome = Outcome.RESOLVED, **changes: object) -> LoopResult:
    fields: dict[str, object] = {
        "workflow_id": workflow_id,
        "loop": Loop.RELIABILITY,
        "subject": "shop/checkout",
        "outcome": outcome,
        "mode": Mode.AUTONOMOUS,
        "reason": "latency back under 0.5s",
        "policy": "rollback-latency-after-rollout",
        "policy_version": "9f6b7349dcfd",
        "actions": [ActionRecord(type="k8s.rollback", target="shop/checkout", mode=Mode.AUTONOMOUS)],
        "timeline": Timeline(
            detected=START, verified=START + timedelta(minutes=3), closed=START + timedelta(minutes=3)
        ),
    }
    return LoopResult.model_validate(fields | changes)


def claim(workflow_id: str, cooldown_s: float = 600) -> TargetClaim:
    return TargetClaim(target="shop/checkout", workflow_id=workflow_id, cooldown_s=cooldown_s)


# --- recording ------------------------------------------------------------------------


def test_recording_the_same_entry_twice_keeps_one_row(store: AuditStore) -> None:
    assert store.record(entry(1)) is True
    assert store.record(entry(1)) is False
    assert store.events() == [entry(1)]
    assert store.count_events() == 1


def test_entries_come_back_as_recorded_in_insert_order(store: AuditStore) -> None:
    for seq in (1, 2, 3):
        store.record(entry(seq))
    store.record(entry(1, workflow_id="reliability-other-1"))
    assert [item.seq for item in store.events("reliability-abc-1")] == [1, 2, 3]
    assert store.events("reliability-abc-1")[1] == entry(2)


def test_timestamps_come_back_in_utc_whatever_zone_they_were_given_in(store: AuditStore) -> None:
    local = START.astimezone(timezone(timedelta(hours=2)))
    store.record(entry(1, at=local))
    assert store.events()[0].at == START
    assert store.events()[0].at.tzinfo is not None


def test_the_audit_activities_write_through_to_the_store(store: AuditStore) -> None:
    activities = AuditActivities(store)
    environment = ActivityEnvironment()
    environment.run(activities.record, entry(1))
    environment.run(activities.record, entry(1))
    granted = environment.run(activities.claim_target, claim("reliability-abc-1"))
    environment.run(
        activities.release_target,
        TargetRelease(target="shop/checkout", workflow_id="reliability-abc-1", acted=True),
    )
    environment.run(activities.close_run, result("reliability-abc-1"))
    assert len(store.events("reliability-abc-1")) == 1
    assert granted.granted
    assert [run.workflow_id for run in store.runs()] == ["reliability-abc-1"]


# --- hash chain -------------------------------------------------------------------------


def test_an_untouched_chain_verifies(store: AuditStore) -> None:
    for seq in range(1, 6):
        store.record(entry(seq))
    assert store.verify_chain() is None


def test_an_empty_store_verifies(store: AuditStore) -> None:
    assert store.verify_chain() is None


def test_editing_a_recorded_event_breaks_the_chain_at_that_event(store: AuditStore) -> None:
    for seq in range(1, 6):
        store.record(entry(seq))
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE audit_events SET detail = 'nothing happened' WHERE seq = 3"))
    broken = store.verify_chain()
    assert broken is not None
    assert (broken.seq, broken.checked) == (3, 2)
    assert "edited" in broken.reason


def test_editing_the_evidence_of_an_event_is_detected(store: AuditStore) -> None:
    store.record(entry(1))
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE audit_events SET evidence = '[]' WHERE seq = 1"))
    broken = store.verify_chain()
    assert broken is not None and broken.seq == 1


def test_removing_an_event_from_the_middle_breaks_the_chain_at_the_next_one(store: AuditStore) -> None:
    for seq in range(1, 6):
        store.record(entry(seq))
    with store.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_events WHERE seq = 2"))
    broken = store.verify_chain()
    assert broken is not None
    assert broken.seq == 3
    assert "removed" in broken.reason


def test_removing_the_newest_events_is_detected_by_the_chain_head(store: AuditStore) -> None:
    for seq in range(1, 6):
        store.record(entry(seq))
    with store.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_events WHERE seq >= 4"))
    broken = store.verify_chain()
    assert broken is not None
    assert broken.event_id is None
    assert "removed from the end" in broken.reason


def test_writers_on_many_threads_keep_one_unbroken_chain_without_duplicates(store: AuditStore) -> None:
    def write(index: int) -> None:
        item = entry(index // 4 + 1, workflow_id=f"reliability-{index % 4}")
        store.record(item)
        store.record(item)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, range(80)))
    assert store.count_events() == 80
    assert store.verify_chain() is None


# --- per-target lock and cooldown ------------------------------------------------------


def test_a_second_run_is_refused_while_another_holds_the_target(store: AuditStore) -> None:
    assert store.claim_target(claim("run-a")).granted
    refused = store.claim_target(claim("run-b"))
    assert not refused.granted
    assert "held by run-a" in refused.reason


def test_the_run_holding_a_target_may_claim_it_again(store: AuditStore) -> None:
    assert store.claim_target(claim("run-a")).granted
    assert store.claim_target(claim("run-a")).granted


def test_a_target_acted_on_is_refused_within_the_cooldown_and_granted_after(
    store: AuditStore, clock: FakeClock
) -> None:
    store.claim_target(claim("run-a"))
    assert store.release_target(TargetRelease(target="shop/checkout", workflow_id="run-a", acted=True))
    clock.advance(599)
    refused = store.claim_target(claim("run-b", cooldown_s=600))
    assert not refused.granted
    assert "cooldown is 600s" in refused.reason
    clock.advance(1)
    assert store.claim_target(claim("run-b", cooldown_s=600)).granted


def test_a_release_without_an_action_starts_no_cooldown(store: AuditStore) -> None:
    store.claim_target(claim("run-a"))
    store.release_target(TargetRelease(target="shop/checkout", workflow_id="run-a", acted=False))
    assert store.claim_target(claim("run-b")).granted


def test_a_release_by_a_run_that_does_not_hold_the_target_changes_nothing(store: AuditStore) -> None:
    store.claim_target(claim("run-a"))
    assert not store.release_target(TargetRelease(target="shop/checkout", workflow_id="run-b", acted=True))
    assert not store.claim_target(claim("run-c")).granted
    assert store.release_target(TargetRelease(target="shop/checkout", workflow_id="run-a", acted=False))
    assert not store.release_target(TargetRelease(target="shop/checkout", workflow_id="run-a", acted=True))
    assert store.claim_target(claim("run-c")).granted


def test_only_one_of_many_concurrent_claims_is_granted(store: AuditStore) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        granted = list(pool.map(lambda index: store.claim_target(claim(f"run-{index}")).granted, range(24)))
    assert sum(granted) == 1


# --- runs ------------------------------------------------------------------------------


def test_closing_a_run_twice_keeps_one_row_with_the_latest_result(store: AuditStore) -> None:
    store.close_run(result("run-a", Outcome.ESCALATED, reason="first"))
    store.close_run(result("run-a", Outcome.RESOLVED, reason="second"))
    runs = store.runs()
    assert len(runs) == 1
    assert (runs[0].outcome, runs[0].reason) == (Outcome.RESOLVED, "second")


def test_a_closed_run_reads_back_as_it_was_recorded(store: AuditStore) -> None:
    closed = result("run-a", human_touched=True, approver="alice")
    store.close_run(closed)
    assert store.runs() == [closed]


def test_runs_are_selected_by_when_they_closed(store: AuditStore) -> None:
    for hours in (1, 5, 30):
        closed_at = START - timedelta(hours=hours)
        store.close_run(result(f"run-{hours}h", timeline=Timeline(detected=closed_at, closed=closed_at)))
    recent = store.runs(since=START - timedelta(hours=24), until=START)
    assert [run.workflow_id for run in recent] == ["run-5h", "run-1h"]
    assert store.runs(loop=Loop.SECURITY) == []


# --- kill switch -----------------------------------------------------------------------


def test_no_loop_is_paused_until_someone_pulls_a_switch(store: AuditStore) -> None:
    assert not store.switch_state(Loop.RELIABILITY).paused
    assert store.switches() == []


def test_pausing_one_loop_leaves_the_others_acting(store: AuditStore) -> None:
    store.pause("security", by="secops-bob", reason="pen test in progress")
    assert tuple(store.switch_state(Loop.SECURITY)) == (
        True,
        "secops-bob",
        "pen test in progress",
        "security",
    )
    assert not store.switch_state(Loop.RELIABILITY).paused
    assert not store.switch_state(Loop.RESOURCE).paused


def test_pausing_all_pauses_every_loop_and_names_the_global_switch(store: AuditStore) -> None:
    store.pause("reliability", by="alice", reason="db migration")
    store.pause("all", by="oncall-bob", reason="change freeze")
    for loop in Loop:
        assert store.switch_state(loop) == (True, "oncall-bob", "change freeze", "all")


def test_resuming_all_leaves_a_loop_paused_on_its_own_paused(store: AuditStore) -> None:
    store.pause("reliability", by="alice", reason="db migration")
    store.pause("all", by="bob")
    store.resume("all", by="bob")
    assert store.switch_state(Loop.RELIABILITY) == (True, "alice", "db migration", "reliability")
    assert not store.switch_state(Loop.SECURITY).paused
    store.resume("reliability", by="alice")
    assert not store.switch_state(Loop.RELIABILITY).paused
    assert [(row.scope, row.paused, row.by) for row in store.switches()] == [
        ("all", False, "bob"),
        ("reliability", False, "alice"),
    ]


def test_pulling_and_releasing_a_switch_is_audited_under_the_persons_name(
    store: AuditStore, clock: FakeClock
) -> None:
    store.record(entry(1))
    store.pause("security", by="secops-bob", reason="pen test")
    clock.advance(60)
    store.resume("security", by="secops-alice")
    events = store.events("governance")
    assert [(e.seq, e.loop, e.step, e.actor) for e in events] == [
        (1, Loop.SECURITY, "paused", "secops-bob"),
        (2, Loop.SECURITY, "resumed", "secops-alice"),
    ]
    assert "pen test" in events[0].detail
    assert events[1].at == START + timedelta(seconds=60)
    assert store.verify_chain() is None


def test_pausing_all_writes_one_audit_event_per_loop(store: AuditStore) -> None:
    store.pause("all", by="oncall-bob", reason="change freeze")
    events = store.events("governance")
    assert [event.loop for event in events] == list(Loop)
    assert {event.detail for event in events} == {"oncall-bob paused every loop: change freeze"}


def test_a_switch_for_a_loop_that_does_not_exist_is_refused(store: AuditStore) -> None:
    with pytest.raises(ValueError, match="no loop 'billing'"):
        store.pause("billing", by="alice")
    assert store.count_events() == 0


def test_the_kill_switch_activity_answers_from_the_store(store: AuditStore) -> None:
    store.pause("reliability", by="alice", reason="db migration")
    environment = ActivityEnvironment()
    governance = Governance(store)
    assert environment.run(governance.kill_switch, KillSwitchQuery(loop=Loop.RELIABILITY)) == (
        KillSwitchState(paused=True, scope="reliability", by="alice", reason="db migration")
    )
    assert not environment.run(governance.kill_switch, KillSwitchQuery(loop=Loop.SECURITY)).paused


# --- schema ----------------------------------------------------------------------------


def test_the_migration_creates_the_schema_the_models_describe(store: AuditStore) -> None:
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_reopening_a_store_keeps_its_data_and_its_chain(store_url: str, clock: FakeClock) -> None:
    first = AuditStore.create(store_url, clock=clock)
    first.record(entry(1))
    first.close()
    again = AuditStore.create(store_url, clock=clock)
    again.record(entry(2))
    assert again.count_events() == 2
    assert again.verify_chain() is None
    again.close()


def test_a_database_url_suture_cannot_use_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="SUTURE_DB_URL"):
        AuditStore.create("no-scheme-here")
