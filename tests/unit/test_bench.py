"""The benchmarks' pure helpers: their events and payloads, how they read runs, round trips and RSS.

No timings are asserted here: benchmarks report figures, tests check behaviour.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml

from policies.detection import assess_credential, signal_of
from policies.loading import load_policies
from policies.scope import SignalType
from policies.security_policy import Detection
from sandbox.aws import Actor, AwsEstate, MotoSandbox, envelope
from sandbox.bench_burst import since_first
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
from sandbox.bench_figures import mean_counts, round_trips
from sandbox.bench_open_runs import batches, waiting_payload
from sandbox.bench_stack import (
    BENCH_POLICIES,
    cpu_seconds,
    kubeconfig,
    rss_mib,
    vm_rss_mib,
    worker_environment,
)
from sandbox.bench_storm import status_counts, storm_payload
from suture.config import Settings
from suture.errors import ConfigError
from suture.identity import reliability_workflow_id, security_subject, security_workflow_id
from suture.models import (
    AuditEntry,
    CredentialActivity,
    Evidence,
    Loop,
    LoopResult,
    Mode,
    Outcome,
    Timeline,
)
from workers.alertmanager import AlertmanagerPayload
from workers.aws_events import EventBridgeEnvelope
from workers.sandbox_commands import benchmarks

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


# --- round trips, RSS ---------------------------------------------------------------------------


def test_round_trips_count_workflow_and_activity_tasks_but_not_local_activities_as_round_trips() -> None:
    history = [
        "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
        *["EVENT_TYPE_WORKFLOW_TASK_SCHEDULED", "EVENT_TYPE_WORKFLOW_TASK_STARTED"] * 3,
        "EVENT_TYPE_MARKER_RECORDED",
        "MARKER_RECORDED",
        "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED",
        "EVENT_TYPE_TIMER_STARTED",
        "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED",
    ]

    counts = round_trips(history)

    assert (counts["workflow_tasks"], counts["activity_tasks"], counts["markers"]) == (3, 1, 2)
    assert (counts["timers"], counts["signals"], counts["events"]) == (1, 1, len(history))


def test_mean_counts_average_each_figure_over_the_runs_read() -> None:
    runs = [{"workflow_tasks": 6, "markers": 20}, {"workflow_tasks": 7, "markers": 21}]

    assert mean_counts(runs) == {"workflow_tasks": 6.5, "markers": 20.5}
    assert mean_counts([]) == {}


def test_the_resident_set_is_read_from_the_vmrss_line_in_mib() -> None:
    status = "Name:\tpython\nVmPeak:\t  900000 kB\nVmRSS:\t  358400 kB\nThreads:\t12\n"

    assert vm_rss_mib(status) == 350.0
    assert vm_rss_mib("Name:\tkthreadd\n") is None


def test_the_rss_of_this_very_process_can_be_read() -> None:
    assert (rss_mib(os.getpid()) or 0) > 0
    assert rss_mib(2**22 + 1) is None  # above the kernel's pid limit: no such process


# --- burst and scale-out ------------------------------------------------------------------------


def test_burst_times_every_containment_from_the_first_arrival() -> None:
    contained = [NOW + timedelta(seconds=1.5), NOW + timedelta(milliseconds=250)]

    assert since_first(NOW, contained) == [1.5, 0.25]


def test_a_worker_process_reaches_the_emulated_cluster_through_its_kubeconfig() -> None:
    document = yaml.safe_load(kubeconfig("http://127.0.0.1:6443"))

    assert document["current-context"] == "sandbox"
    assert document["clusters"][0]["cluster"]["server"] == "http://127.0.0.1:6443"


def test_every_worker_process_gets_the_same_queue_store_key_folder_and_policies(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    stack = SimpleNamespace(
        temporal_address="127.0.0.1:7233",
        task_queue="suture",
        settings=SimpleNamespace(state_dir=tmp_path, db_url="postgresql+psycopg://db/suture"),
        policy_dirs=[tmp_path / "a", tmp_path / "b"],
        escalation_webhook=None,
        monitoring=SimpleNamespace(prometheus_url="http://127.0.0.1:9090"),
        aws=SimpleNamespace(endpoint_url="http://127.0.0.1:5000"),
    )

    environment = worker_environment(cast(Any, stack), tmp_path / "kubeconfig")

    assert environment["SUTURE_DB_URL"] == "postgresql+psycopg://db/suture"
    assert environment["SUTURE_STATE_DIR"] == str(tmp_path)  # where the audit key file is
    assert environment["SUTURE_TASK_QUEUE"] == "suture"
    assert Settings.from_env(environment).policy_dirs == (tmp_path / "a", tmp_path / "b")
    assert environment["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5000"


# --- storm ---------------------------------------------------------------------------------------


def test_a_storm_payload_is_one_valid_webhook_with_one_run_per_alert() -> None:
    payload = AlertmanagerPayload.model_validate(storm_payload(5000, "storm1", NOW))

    ids = {reliability_workflow_id(alert.to_notice(NOW)) for alert in payload.alerts}
    assert len(payload.alerts) == 5000 and len(ids) == 5000
    assert {alert.labels["alertname"] for alert in payload.alerts} == {"SutureStorm"}


def test_answers_are_counted_by_class_and_a_lost_connection_apart() -> None:
    assert status_counts([202, 503, 503, 0, 422]) == {"2xx": 1, "4xx": 1, "5xx": 2, "none": 1}


# --- open runs -----------------------------------------------------------------------------------


def test_the_waiting_alerts_are_posted_in_batches_that_cover_every_run_once() -> None:
    pieces = batches(250, 100)

    assert [len(piece) for piece in pieces] == [100, 100, 50]
    assert [index for piece in pieces for index in piece] == list(range(250))
    assert batches(0, 100) == []


def test_each_waiting_alert_names_its_own_deployment_and_matches_the_supervised_bench_policy() -> None:
    payload = AlertmanagerPayload.model_validate(waiting_payload(range(100, 103), "wait1", NOW))

    assert [alert.labels["deployment"] for alert in payload.alerts] == [
        "wait-00100",
        "wait-00101",
        "wait-00102",
    ]
    policies = load_policies([BENCH_POLICIES])
    waiting = next(policy for policy in policies if policy.name == "bench-open-runs")
    assert waiting.mode == Mode.SUPERVISED and waiting.approval is not None
    assert waiting.approval.timeout >= 3600 and "bench-approver" in waiting.approval.approvers


# --- the registry --------------------------------------------------------------------------------


def test_every_benchmark_the_issue_names_is_registered() -> None:
    assert {"latency", "containment", "burst", "storm", "open-runs", "scale-out"} <= set(benchmarks())


def test_a_benchmark_refuses_an_option_it_does_not_take_in_one_line() -> None:
    latency = benchmarks()["latency"]

    with pytest.raises(ConfigError, match="benchmark latency takes no --workers"):
        latency(count=1, rate=None, workers=2, progress=None)


def test_cpu_time_is_read_after_the_command_name_even_when_it_holds_spaces() -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    fields = ["S"] + ["0"] * 10 + [str(3 * ticks), str(ticks)] + ["0"] * 30
    stat = f"4242 (python -m suture) {' '.join(fields)}"

    assert cpu_seconds(stat) == 4.0
