"""The containment benchmark's pure helpers: its events, its duplicates, how it reads a run.

No timings are asserted here: benchmarks report figures, tests check behaviour.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from policies.detection import assess_credential, signal_of
from policies.scope import SignalType
from policies.security_policy import Detection
from sandbox.aws import Actor, AwsEstate, MotoSandbox, envelope
from sandbox.bench_containment import (
    containment_seconds,
    disabled_at,
    duplicated,
    leaked_key_call,
    nearest_rank,
    repeats,
    routine_history,
    summary,
)
from suture.identity import security_subject, security_workflow_id
from suture.models import AuditEntry, CredentialActivity, Evidence, Loop, LoopResult, Outcome, Timeline
from workers.aws_events import EventBridgeEnvelope

NOW = datetime(2026, 11, 25, 3, 0, 5, tzinfo=UTC)
KEY = "AKIAEXAMPLEKEY000001"


def actor(key: str = KEY, user: str = "bench-user-0001") -> Actor:
    estate = AwsEstate(prefix="bench-", users={user: [key]}, secrets={key: "secret"})
    return MotoSandbox().user_actor(estate, user, key)


def test_a_leaked_key_event_is_an_access_key_anomaly_about_that_key() -> None:
    event = EventBridgeEnvelope.model_validate(envelope(leaked_key_call(actor(), NOW))).to_event(NOW)

    assert signal_of(event) == SignalType.ACCESS_KEY_ANOMALY
    assert security_subject(event) == KEY
    assert event.principal.user_name == "bench-user-0001"


def test_each_key_gets_its_own_run() -> None:
    first = envelope(leaked_key_call(actor(KEY, "u1"), NOW))
    second = envelope(leaked_key_call(actor("AKIAEXAMPLEKEY000002", "u2"), NOW))
    ids = {
        security_workflow_id(EventBridgeEnvelope.model_validate(body).to_event(NOW))
        for body in (first, second, first)
    }
    assert len(ids) == 2


def test_against_its_routine_history_the_leaked_call_is_risky_enough_to_act_on() -> None:
    leaked = actor()
    history = routine_history(leaked, NOW - timedelta(hours=2))
    event = EventBridgeEnvelope.model_validate(envelope(leaked_key_call(leaked, NOW))).to_event(NOW)
    baseline = CredentialActivity(
        calls=len(history),
        successful_calls=len(history),
        source_ips=sorted({r["sourceIPAddress"] for r in history}),
        event_names=sorted({r["eventName"] for r in history}),
        user_agents=sorted({r["userAgent"] for r in history}),
        source="trail",
    )

    finding = assess_credential(event, Detection(), baseline)

    assert finding.risk >= 0.7  # the sandbox policy's act_at
    assert [t.target.name for t in finding.targets] == [f"bench-user-0001/{KEY}"]


def test_the_routine_history_lies_before_the_baseline_gap() -> None:
    end = NOW - timedelta(hours=2)
    history = routine_history(actor(), end)
    times = [datetime.fromisoformat(r["eventTime"].replace("Z", "+00:00")) for r in history]
    assert history and max(times) <= end
    assert all(r["sourceIPAddress"].startswith("10.") and not r.get("errorCode") for r in history)


def test_one_event_in_twenty_is_delivered_twice() -> None:
    assert len(duplicated(200)) == 10
    assert all(0 <= index < 200 for index in duplicated(200))
    assert duplicated(5) == {4}
    assert duplicated(0) == set()


def entry(seq: int, step: str, detail: str, *evidence: Evidence) -> AuditEntry:
    return AuditEntry(
        workflow_id="security-1",
        seq=seq,
        loop=Loop.SECURITY,
        subject=KEY,
        step=step,
        detail=detail,
        evidence=list(evidence),
        at=NOW + timedelta(seconds=seq),
    )


def disabled(at: datetime) -> Evidence:
    return Evidence(
        source="aws.iam",
        query=f"UpdateAccessKey {KEY} Status=Inactive",
        value="Inactive",
        at=at,
        note="credential disabled (key-1)",
    )


def result(detected: datetime | None) -> LoopResult:
    return LoopResult(
        workflow_id="security-1",
        loop=Loop.SECURITY,
        subject=KEY,
        outcome=Outcome.RESOLVED,
        reason="contained",
        timeline=Timeline(detected=detected),
    )


def test_containment_ends_when_the_deactivation_evidence_says_the_key_was_disabled() -> None:
    off = NOW + timedelta(milliseconds=250)
    entries = [
        entry(1, "detected", "ListBuckets by ..."),
        entry(2, "acted", f"iam.deactivate_access_key on 123456789012/u/{KEY}: Inactive", disabled(off)),
        entry(3, "verified", "healthy", disabled(NOW + timedelta(seconds=9))),
    ]

    assert disabled_at(entries) == off
    assert containment_seconds(result(NOW), entries) == 0.25


def test_a_run_that_disabled_nothing_has_no_containment_time() -> None:
    already = entry(2, "acted", f"iam.deactivate_access_key on 123456789012/u/{KEY}: already Inactive")

    assert disabled_at([already]) is None
    assert containment_seconds(result(NOW), [already]) is None
    assert (
        containment_seconds(result(None), [entry(2, "acted", "iam.deactivate_access_key", disabled(NOW))])
        is None
    )


def test_repeats_count_only_what_happened_more_than_once() -> None:
    assert repeats(["a", "b", "c"]) == 0
    assert repeats(["a", "b", "a", "a"]) == 2


def test_summary_uses_nearest_rank_percentiles() -> None:
    figures = summary([float(n) for n in range(100, 0, -1)])

    assert (figures["p50_s"], figures["p99_s"], figures["max_s"], figures["mean_s"]) == (
        50.0,
        99.0,
        100.0,
        50.5,
    )
    assert summary([]) == {"p50_s": None, "p99_s": None, "max_s": None, "mean_s": None}


def test_nearest_rank_is_the_ceiling_rank() -> None:
    values = [float(n) for n in range(1, 201)]

    assert nearest_rank(values, 0.99) == 198.0
    assert nearest_rank([2.0, 1.0], 0.5) == 1.0
    assert nearest_rank([float(n) for n in range(1, 7)], 0.5) == 3.0
    assert nearest_rank([5.0], 0.99) == 5.0
    assert nearest_rank([float(n) for n in range(1, 101)], 0.07) == 7.0
