"""Verification lag and where the time goes: measured per action, shown per policy and per loop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from activities.prometheus import PrometheusProbe
from activities.readiness import principal_arn, retention_days
from suture.audit_chain import AuditKey
from suture.models import AuditEntry, Evidence, HealthCheck, Loop, LoopResult, Outcome, Timeline
from suture.report import propagation, summarize, time_table
from suture.stages import PROPAGATION
from suture.store import AuditStore
from workers.readiness_cli import window_warnings

ACTED = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


class RangeAnswers:
    """A Prometheus client that answers one range query with the values it was given, a second apart."""

    url = "http://prometheus.test"

    def __init__(self, values: list[float]) -> None:
        self.values = values
        self.asked: list[dict[str, Any]] = []

    def custom_query_range(self, query: str, **window: Any) -> list[dict[str, Any]]:
        self.asked.append({"query": query, **window})
        start = ACTED.timestamp()
        return [{"metric": {}, "values": [[start + i, str(v)] for i, v in enumerate(self.values)]}]


def check() -> HealthCheck:
    return HealthCheck(query="latency", operator="<", threshold=0.5, changed_at=ACTED)


def test_the_first_sample_from_which_the_condition_held_to_the_end_is_when_the_change_showed() -> None:
    client = RangeAnswers([0.9, 0.8, 0.3, 0.9, 0.4, 0.3, 0.2])
    probe = PrometheusProbe(client)  # type: ignore[arg-type]

    first = probe.first_met(check(), ACTED + timedelta(seconds=6))

    assert first == ACTED + timedelta(seconds=4), "the dip at 3 s restarts the count"
    assert client.asked[0]["start_time"] == ACTED


def test_a_condition_that_does_not_hold_at_the_end_has_no_first_time() -> None:
    probe = PrometheusProbe(RangeAnswers([0.3, 0.9]))  # type: ignore[arg-type]

    assert probe.first_met(check(), ACTED + timedelta(seconds=1)) is None


def run(workflow_id: str, policy: str, **stamps: float) -> LoopResult:
    timeline = Timeline(**{name: ACTED + timedelta(seconds=at) for name, at in stamps.items()})
    return LoopResult(
        workflow_id=workflow_id,
        loop=Loop.RELIABILITY,
        subject="shop/checkout",
        outcome=Outcome.RESOLVED,
        reason="healthy",
        policy=policy,
        timeline=timeline,
    )


def verified(workflow_id: str, lag_s: float) -> AuditEntry:
    lag = Evidence(source=PROPAGATION, query="latency", value=lag_s, at=ACTED + timedelta(seconds=lag_s))
    return AuditEntry(
        workflow_id=workflow_id,
        seq=5,
        loop=Loop.RELIABILITY,
        subject="shop/checkout",
        step="verified",
        detail="healthy",
        evidence=[lag],
        at=ACTED,
    )


def test_the_report_shows_median_and_p90_propagation_per_policy_against_its_window() -> None:
    runs = [run(f"r{i}", "latency-rollback") for i in range(10)]
    entries = [verified(f"r{i}", float(lag)) for i, lag in enumerate([2, 2, 3, 3, 3, 4, 4, 5, 9, 12])]

    [lags] = propagation(runs, entries, {"latency-rollback": 6.0})

    assert (lags.policy, lags.runs, lags.median_s) == ("latency-rollback", 10, 3.5)
    assert lags.p90_s > 6.0 and lags.window_too_short


def test_the_report_breaks_each_loops_time_into_decision_action_and_verification() -> None:
    runs = [
        run("a", "p", detected=0, decided=2, acted=12, verified=40),
        run("b", "p", detected=0, decided=4, acted=6, verified=30),
    ]

    report = summarize(runs, ACTED - timedelta(hours=1), ACTED + timedelta(hours=1))
    reliability = next(figures for figures in report.loops if figures.loop == Loop.RELIABILITY)

    assert (reliability.decide_median_s, reliability.act_median_s, reliability.verify_median_s) == (
        3.0,
        6.0,
        26.0,
    )
    assert time_table(report).rows[0] == ["reliability", "3.0s", "6.0s", "26.0s"]


def test_policy_check_against_history_warns_where_the_window_is_shorter_than_measured(tmp_path: Path) -> None:
    store = AuditStore.create(f"sqlite:///{tmp_path / 'suture.db'}", key=AuditKey(b"k" * 32))
    now = datetime.now(UTC)
    for index, lag in enumerate([8.0, 9.0, 11.0]):
        result = run(f"r{index}", "slow-to-show", detected=0, closed=1).model_copy(
            update={"timeline": Timeline(detected=now, closed=now)}
        )
        store.close_run(result)
        store.record(verified(f"r{index}", lag).model_copy(update={"at": now}))

    class Policy:
        name = "slow-to-show"

        class verify:
            window = 5.0

    warnings = window_warnings(store, [Policy()])

    assert len(warnings) == 1 and "window 5s is shorter than the measured verification lag" in warnings[0]


def test_retention_and_principals_read_as_prometheus_and_aws_write_them() -> None:
    assert retention_days("15d") == 15 and retention_days("45d or 10GiB") == 45
    assert retention_days("1y2w") == 379 and retention_days("10GiB") is None
    assert principal_arn("arn:aws:sts::123456789012:assumed-role/suture-worker/i-0abc") == (
        "arn:aws:iam::123456789012:role/suture-worker"
    )
    assert principal_arn("arn:aws:iam::123456789012:user/ci") == "arn:aws:iam::123456789012:user/ci"
