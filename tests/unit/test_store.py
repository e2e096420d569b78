"""The audit store: idempotent recording, a tamper-evident chain, per-target locks.

Every test runs against a SQLite file and against PostgreSQL: a throwaway cluster
from Debian's packages (``make postgres``), or the database named by
``SUTURE_TEST_POSTGRES_URL`` (one the tests may wipe).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from prometheus_client import CollectorRegistry
from sqlalchemy import insert, text
from sqlalchemy.orm import Session
from temporalio.testing import ActivityEnvironment
from typer.testing import CliRunner

from activities.audit import AuditActivities
from activities.governance import Governance
from activities.resource_bookkeeping import ResourceBookkeeping
from suture.audit_chain import GENESIS, RUNS, AuditKey, chain_hash, chain_head_collector
from suture.errors import ConfigError
from suture.fleet import ActedTodayQuery
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
from suture.tables import AuditEvent, Run, fill_run
from workers.cli import app

START = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


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


KEY = AuditKey(b"k" * 32)
"""The audit key of every store in these tests, as SUTURE_AUDIT_KEY would give it."""


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    # The PostgreSQL store keeps its head file in the state dir; each test gets its own.
    monkeypatch.setenv("SUTURE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SUTURE_AUDIT_KEY", "k" * 32)
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'suture.db'}"
    url: str = request.getfixturevalue("postgres_url")
    wipe = AuditStore.create(url, key=KEY, migrate=False)
    with wipe.engine.begin() as connection:
        Base.metadata.drop_all(connection)
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    wipe.close()
    return url


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


def test_swapping_two_events_breaks_the_chain(store: AuditStore) -> None:
    for seq in range(1, 4):
        store.record(entry(seq))
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE audit_events SET seq = 99 WHERE seq = 1"))
        connection.execute(text("UPDATE audit_events SET seq = 1 WHERE seq = 2"))
        connection.execute(text("UPDATE audit_events SET seq = 2 WHERE seq = 99"))
    broken = store.verify_chain()
    assert broken is not None and broken.checked == 0


def test_an_event_inserted_by_hand_is_detected(store: AuditStore) -> None:
    for seq in range(1, 3):
        store.record(entry(seq))
    forged = entry(3, detail="approved by alice")
    with store.engine.begin() as connection:
        previous = (
            connection.execute(text("SELECT hash FROM audit_events ORDER BY id DESC")).scalars().first()
        )
        connection.execute(
            insert(AuditEvent.__table__).values(
                **forged.model_dump(mode="json", exclude={"at"}),
                at=forged.at,
                prev_hash=previous,
                hash=chain_hash(previous, forged),
            )
        )
    broken = store.verify_chain()
    assert broken is not None and broken.seq == 3
    assert "without the audit key" in broken.reason


# --- keyed chain: what a plain hash chain cannot catch -----------------------------------


def rewrite_history(store: AuditStore, edit: str) -> None:
    """Edit the events with ``edit`` and recompute every plain hash and the head, as an attacker would."""
    with store.engine.begin() as connection:
        connection.execute(text(edit))
        ids = list(connection.execute(text("SELECT id FROM audit_events ORDER BY id")).scalars())
    previous = GENESIS
    with store.engine.begin() as connection:
        for event_id, recorded in zip(ids, store.events(), strict=True):
            digest = chain_hash(previous, recorded)
            connection.execute(
                text("UPDATE audit_events SET prev_hash = :prev, hash = :hash WHERE id = :id"),
                {"prev": previous, "hash": digest, "id": event_id},
            )
            previous = digest
        connection.execute(text("UPDATE audit_chain SET hash = :hash"), {"hash": previous})


def test_a_history_rewritten_with_recomputed_hashes_is_caught(store: AuditStore) -> None:
    for seq in range(1, 6):
        store.record(entry(seq))
    rewrite_history(store, "UPDATE audit_events SET detail = 'nothing happened' WHERE seq = 3")
    assert store.events()[2].detail == "nothing happened"
    broken = store.verify_chain()
    assert broken is not None
    assert (broken.seq, broken.checked) == (3, 2)
    assert "rewritten with recomputed hashes" in broken.reason


def test_an_older_copy_of_the_database_restored_is_caught_by_the_head_file(store: AuditStore) -> None:
    for seq in range(1, 4):
        store.record(entry(seq))
    with store.engine.connect() as connection:
        backup = connection.execute(text("SELECT last_event_id, hash, seq, mac FROM audit_chain")).one()
    for seq in range(4, 6):
        store.record(entry(seq))
    with store.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_events WHERE seq > 3"))
        connection.execute(
            text(
                "UPDATE audit_chain SET last_event_id = :last_event_id, hash = :hash, seq = :seq, mac = :mac"
            ),
            dict(backup._mapping),
        )
    report = store.verify()
    assert [str(item) for item in report.breaks] == [
        f"the chain head: the chain ends at event 3 but the head file {store.checkpoint} recorded 5 events: "
        "events were removed from the end or an older copy of the database was restored"
    ]


def test_verifying_while_runs_close_reports_no_false_break(store: AuditStore) -> None:
    def close(index: int) -> None:
        store.record(entry(1, workflow_id=f"reliability-{index}"))
        store.close_run(result(f"reliability-{index}"))

    with ThreadPoolExecutor(max_workers=4) as pool:
        writes = [pool.submit(close, index) for index in range(40)]
        reports = []
        while not all(write.done() for write in writes):
            reports.append(store.verify())
    assert [report.breaks for report in reports if not report.intact] == []
    assert store.verify().runs == 40


def test_an_edited_head_file_is_caught(store: AuditStore) -> None:
    store.record(entry(1))
    assert store.checkpoint is not None
    recorded = json.loads(store.checkpoint.read_text())
    store.checkpoint.write_text(json.dumps(recorded | {"seq": 0}))
    broken = store.verify_chain()
    assert broken is not None and "head file" in broken.reason and "not signed" in broken.reason


def test_the_head_file_follows_every_append(store: AuditStore) -> None:
    for seq in range(1, 4):
        store.record(entry(seq))
    assert store.checkpoint is not None
    assert json.loads(store.checkpoint.read_text())["seq"] == 3 == store.chain_head_seq()


def test_the_chain_head_gauge_reports_the_head_sequence(store: AuditStore) -> None:
    registry = CollectorRegistry()
    registry.register(chain_head_collector(store.chain_head_seq))
    store.record(entry(1))
    store.pause("all", by="alice")
    assert registry.get_sample_value("suture_audit_chain_head_seq") == 1 + len(Loop)


def test_a_store_opened_with_another_key_is_refused_naming_the_variable(
    store_url: str, store: AuditStore
) -> None:
    store.record(entry(1))
    with pytest.raises(ConfigError, match=f"SUTURE_AUDIT_KEY: .* keyed with key id {KEY.key_id}"):
        AuditStore.create(store_url, key=AuditKey(b"another key of at least 32 bytes!!"))


def test_an_audit_key_too_short_to_be_a_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 32 characters"):
        AuditKey(b"secret")


# --- the runs table is covered -------------------------------------------------------------


def test_a_runs_row_whose_outcome_and_approver_were_edited_is_caught(store: AuditStore) -> None:
    store.close_run(result("reliability-abc-1", Outcome.ESCALATED, approver="alice"))
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE runs SET outcome = 'resolved', approver = 'mallory'"))
    broken = store.verify_chain()
    assert broken is not None and broken.run == "reliability-abc-1"
    assert "outcome resolved; approver mallory" in broken.reason
    assert "outcome escalated; approver alice" in broken.reason


def test_a_runs_row_edited_anywhere_else_is_caught(store: AuditStore) -> None:
    store.close_run(result("reliability-abc-1"))
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE runs SET reason = 'all fine', human_touched = true"))
    broken = store.verify_chain()
    assert broken is not None and broken.run == "reliability-abc-1"


def test_a_deleted_or_added_runs_row_is_caught(store: AuditStore) -> None:
    store.close_run(result("reliability-abc-1"))
    store.close_run(result("reliability-abc-2", subject="b"))
    with store.engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE runs SET workflow_id = 'reliability-forged-3' WHERE workflow_id = 'reliability-abc-2'"
            )
        )
    reasons = {item.run: item.reason for item in store.verify().breaks}
    assert set(reasons) == {"reliability-forged-3", "reliability-abc-2"}
    assert "added outside suture" in reasons["reliability-forged-3"]
    assert "deleted" in reasons["reliability-abc-2"]


def test_closing_a_run_again_with_the_same_result_writes_no_second_seal(store: AuditStore) -> None:
    store.close_run(result("reliability-abc-1"))
    store.close_run(result("reliability-abc-1"))
    assert len(store.events(RUNS)) == 1
    store.close_run(result("reliability-abc-1", Outcome.ROLLED_BACK))
    assert len(store.events(RUNS)) == 2
    assert store.verify_chain() is None


# --- stores from before the key existed -------------------------------------------------------


def legacy_store(url: str) -> None:
    """A store as the previous release left it: three unkeyed events and one run."""
    old = AuditStore.create(url, key=KEY, migrate=False)
    old.upgrade("0002")
    previous = GENESIS
    rows = []
    for seq in (1, 2, 3):
        item = entry(seq)
        digest = chain_hash(previous, item)
        rows.append(item.model_dump(mode="json", exclude={"at"}) | {"at": item.at, "prev_hash": previous})
        rows[-1]["hash"] = previous = digest
    with old.engine.begin() as connection:
        connection.execute(insert(AuditEvent.__table__), rows)
        connection.execute(text("UPDATE audit_chain SET last_event_id = 3, hash = :hash"), {"hash": previous})
    with Session(old.engine) as session, session.begin():
        row = Run(workflow_id="reliability-abc-1")
        fill_run(row, result("reliability-abc-1", approver="alice"))
        session.add(row)
    old.close()


def test_events_from_before_the_key_are_reported_as_unkeyed_legacy_rows(store_url: str) -> None:
    legacy_store(store_url)
    store = AuditStore.create(store_url, key=KEY)
    report = store.verify()
    assert report.intact, report.breaks
    assert (report.events, report.legacy_events, report.runs) == (4, 3, 1)
    assert "unkeyed legacy rows 1..3" in report.summary()
    store.record(entry(4))
    assert store.verify().legacy_events == 3


def test_a_legacy_event_rewritten_after_the_key_arrived_is_caught(store_url: str) -> None:
    legacy_store(store_url)
    store = AuditStore.create(store_url, key=KEY)
    rewrite_history(store, "UPDATE audit_events SET detail = 'nothing happened' WHERE seq = 2")
    broken = store.verify_chain()
    assert broken is not None and broken.event_id == 4


def test_a_legacy_run_is_sealed_when_the_key_arrives_and_edits_after_that_are_caught(store_url: str) -> None:
    legacy_store(store_url)
    store = AuditStore.create(store_url, key=KEY)
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE runs SET approver = 'mallory'"))
    broken = store.verify_chain()
    assert broken is not None and broken.run == "reliability-abc-1"


# --- where the key comes from ------------------------------------------------------------------


def test_without_a_configured_key_one_is_generated_beside_the_database_for_the_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("SUTURE_AUDIT_KEY", raising=False)
    url = f"sqlite:///{tmp_path / 'state' / 'suture.db'}"
    first = AuditStore.create(url)
    first.record(entry(1))
    key_file = tmp_path / "state" / "audit.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert "production must set SUTURE_AUDIT_KEY" in caplog.text
    assert first.key.key_id not in key_file.read_text()
    again = AuditStore.create(url)
    assert again.key.key_id == first.key.key_id
    assert again.verify_chain() is None
    with again.engine.connect() as connection:
        stored = " ".join(str(value) for value in connection.execute(text("SELECT * FROM audit_chain")).one())
    assert key_file.read_text().strip() not in stored


def test_audit_verify_on_the_command_line_says_intact_then_names_what_was_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'suture.db'}"
    monkeypatch.setenv("SUTURE_DB_URL", url)
    monkeypatch.setenv("SUTURE_AUDIT_KEY", "k" * 32)
    store = AuditStore.create(url)
    store.close_run(result("reliability-abc-1", Outcome.ESCALATED))
    intact = CliRunner().invoke(app, ["audit", "verify"], terminal_width=300)
    assert intact.exit_code == 0, intact.output
    assert "audit chain intact" in intact.output
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE runs SET outcome = 'resolved'"))
    broken = CliRunner().invoke(app, ["audit", "verify"], terminal_width=300)
    assert broken.exit_code == 1
    assert "run reliability-abc-1: the runs row says «outcome resolved" in broken.output
    monkeypatch.setenv("SUTURE_AUDIT_KEY", "w" * 32)
    wrong_key = CliRunner().invoke(app, ["audit", "verify"], terminal_width=300)
    assert wrong_key.exit_code == 2
    assert "SUTURE_AUDIT_KEY" in wrong_key.output and len(wrong_key.output.strip().splitlines()) == 1


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


def test_lock_holders_names_only_the_targets_a_run_holds_now(store: AuditStore) -> None:
    store.claim_target(claim("run-a"))
    store.claim_target(TargetClaim(target="shop/cart", workflow_id="run-b", cooldown_s=0))
    store.release_target(TargetRelease(target="shop/cart", workflow_id="run-b", acted=False))
    targets = ["shop/checkout", "shop/cart", "shop/never", *(f"shop/x{n}" for n in range(600))]
    assert store.lock_holders(targets) == {"shop/checkout": "run-a"}


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


def test_the_daily_cap_counts_resource_runs_still_verifying_from_their_acted_events(
    store: AuditStore,
) -> None:
    stopped = ActionRecord(type="ec2.stop_instances", target="123/i-closed", mode=Mode.AUTONOMOUS)
    store.close_run(result("resource-closed", loop=Loop.RESOURCE, subject="123/i-closed", actions=[stopped]))
    dry = ActionRecord(type="ec2.stop_instances", target="123/i-dry", mode=Mode.DRY_RUN)
    store.close_run(result("resource-dry", loop=Loop.RESOURCE, subject="123/i-dry", actions=[dry]))
    for workflow_id, subject, step in (
        ("resource-open", "123/i-open", "acted"),
        ("resource-pending", "123/i-pending", "detected"),
        ("reliability-x", "shop/checkout", "acted"),
    ):
        loop = Loop(workflow_id.split("-")[0])
        store.record(entry(1, workflow_id=workflow_id, loop=loop, subject=subject, step=step))
    bookkeeping = ResourceBookkeeping(store, policies=None)  # type: ignore[arg-type]

    acted = ActivityEnvironment().run(
        bookkeeping.acted_today, ActedTodayQuery(since=START - timedelta(hours=1))
    )

    assert acted.targets == ["123/i-closed", "123/i-open"]


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
