"""The verification verdict: only one fresh, finite sample may be called healthy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from activities.prometheus import Sample, judge
from suture.models import HealthCheck, Verdict

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LABELS = {"__name__": "sandbox_request_latency_p99_seconds", "namespace": "shop", "service": "checkout"}


def latency_below(threshold: float = 0.5, operator: str = "<", max_staleness_s: float = 4.0) -> HealthCheck:
    return HealthCheck(
        query='sandbox_request_latency_p99_seconds{service="checkout"}',
        operator=operator,
        threshold=threshold,
        max_staleness_s=max_staleness_s,
    )


def sample(value: float, age_s: float = 1.0, **labels: str) -> Sample:
    return Sample(labels={**LABELS, **labels}, value=value, at=NOW - timedelta(seconds=age_s))


def test_a_fresh_value_meeting_the_condition_is_healthy() -> None:
    report = judge(latency_below(), [sample(0.2)], NOW)
    assert report.verdict == Verdict.HEALTHY
    assert report.reason == "0.2 < 0.5 holds"


def test_a_fresh_value_breaking_the_condition_is_unhealthy() -> None:
    report = judge(latency_below(), [sample(0.9)], NOW)
    assert report.verdict == Verdict.UNHEALTHY
    assert "does not hold" in report.reason


def test_no_sample_is_unknown_never_healthy() -> None:
    report = judge(latency_below(), [], NOW)
    assert report.verdict == Verdict.UNKNOWN
    assert "no sample" in report.reason
    assert report.evidence[0].value is None


def test_a_sample_older_than_allowed_is_unknown_even_if_it_looks_healthy() -> None:
    report = judge(latency_below(max_staleness_s=4.0), [sample(0.1, age_s=12.0)], NOW)
    assert report.verdict == Verdict.UNKNOWN
    assert "12.0s old" in report.reason


def test_a_sample_exactly_at_the_staleness_limit_still_counts() -> None:
    assert judge(latency_below(max_staleness_s=4.0), [sample(0.1, age_s=4.0)], NOW).verdict == Verdict.HEALTHY


def test_nan_is_unknown_whatever_the_operator() -> None:
    for operator in ("<", "!=", ">="):
        report = judge(latency_below(operator=operator), [sample(float("nan"))], NOW)
        assert report.verdict == Verdict.UNKNOWN
        assert report.reason == "the value is NaN"
        assert report.evidence[0].value == "NaN"


def test_several_series_where_one_is_expected_is_unknown_and_says_so() -> None:
    samples = [sample(0.1, instance="a:1"), sample(0.2, instance="b:1")]
    report = judge(latency_below(), samples, NOW)
    assert report.verdict == Verdict.UNKNOWN
    assert "2 series where one is expected" in report.reason
    assert len(report.evidence) == 2


def test_evidence_names_the_series_and_its_scrape_time() -> None:
    [evidence] = judge(latency_below(), [sample(0.2, age_s=2.0)], NOW).evidence
    assert evidence.source == "prometheus"
    assert evidence.value == 0.2
    assert evidence.at == NOW - timedelta(seconds=2)
    assert evidence.note == 'sandbox_request_latency_p99_seconds{namespace="shop", service="checkout"}'


@pytest.mark.parametrize(
    ("operator", "value", "verdict"),
    [
        ("<", 0.4, Verdict.HEALTHY),
        ("<", 0.5, Verdict.UNHEALTHY),
        ("<=", 0.5, Verdict.HEALTHY),
        ("<=", 0.6, Verdict.UNHEALTHY),
        (">", 0.6, Verdict.HEALTHY),
        (">", 0.5, Verdict.UNHEALTHY),
        (">=", 0.5, Verdict.HEALTHY),
        (">=", 0.4, Verdict.UNHEALTHY),
        ("==", 0.5, Verdict.HEALTHY),
        ("==", 0.4, Verdict.UNHEALTHY),
        ("!=", 0.4, Verdict.HEALTHY),
        ("!=", 0.5, Verdict.UNHEALTHY),
    ],
)
def test_each_operator_compares_the_value_with_the_threshold(
    operator: str, value: float, verdict: Verdict
) -> None:
    assert judge(latency_below(0.5, operator), [sample(value)], NOW).verdict == verdict


def test_infinity_is_compared_like_any_other_value() -> None:
    report = judge(latency_below(), [sample(float("inf"))], NOW)
    assert report.verdict == Verdict.UNHEALTHY
    assert report.evidence[0].value == "+Inf"
