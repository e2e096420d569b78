"""Prometheus as evidence and as the judge of verification.

Verification must never call a fix healthy on a signal it cannot trust, so the
verdict is ``unknown`` whenever the answer is not exactly one fresh, finite sample:
no sample at all (a target that goes down has its series marked stale and they
vanish from instant queries, so "no data" is the usual face of an outage, never
good news), several series where one is expected, a sample older than the check
allows, or NaN. That decision is :func:`judge`, a pure function; the activities
only fetch samples.

An instant query reports its evaluation time, not when the sample was taken, so
each query is followed by ``timestamp(<query>)`` at the same evaluation time. For
a plain selector this gives the scrape time of every series; for a computed
expression Prometheus reports the evaluation time and freshness rests on its
staleness handling alone. Ages are measured on Prometheus's clock, so clock skew
between the worker and Prometheus does not make samples look stale or fresh.

Prometheus being unreachable is raised for Temporal to retry; the workflow turns
exhausted retries into ``unknown``. A query Prometheus rejects is permanent.

A healthy verdict on a check that names when the action happened also says when
the signal first showed it (:meth:`PrometheusProbe.first_met`): the verification
lag, which tells whether a policy's propagation window is long enough.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from temporalio import activity
from temporalio.exceptions import ApplicationError
from urllib3.util.retry import Retry

from suture.errors import PrometheusQueryRejected, PrometheusUnavailable
from suture.models import (
    Evidence,
    EvidenceReport,
    EvidenceRequest,
    HealthCheck,
    HealthReport,
    Verdict,
)

SOURCE = "prometheus"
MAX_SERIES_PER_QUERY = 20
"""Evidence kept per query; the rest is summarised, to keep workflow histories small."""

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_NON_FINITE = {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}
"""Non-finite values are kept as Prometheus writes them; JSON has no NaN."""
_STATUS = re.compile(r"HTTP Status Code (\d+)")


@dataclass(frozen=True)
class Sample:
    """One series of an instant query: its labels, value and when it was scraped."""

    labels: Mapping[str, str]
    value: float
    at: datetime


def judge(check: HealthCheck, samples: Sequence[Sample], evaluated_at: datetime) -> HealthReport:
    """Decide whether ``samples`` (the answer to ``check.query`` at ``evaluated_at``) are healthy."""
    evidence = [_evidence(check.query, sample) for sample in samples[:MAX_SERIES_PER_QUERY]]
    if not samples:
        return HealthReport(
            verdict=Verdict.UNKNOWN,
            reason="no sample: the series is missing or stale (is its target down?)",
            evidence=[Evidence(source=SOURCE, query=check.query, at=evaluated_at, note="no samples")],
        )
    if len(samples) > 1:
        return HealthReport(
            verdict=Verdict.UNKNOWN,
            reason=f"the query returned {len(samples)} series where one is expected; "
            "narrow its labels or aggregate it (e.g. max(...))",
            evidence=evidence,
        )
    sample = samples[0]
    age = (evaluated_at - sample.at).total_seconds()
    if age > check.max_staleness_s:
        return HealthReport(
            verdict=Verdict.UNKNOWN,
            reason=f"the newest sample is {age:.1f}s old, more than the {check.max_staleness_s:g}s allowed",
            evidence=evidence,
        )
    if math.isnan(sample.value):
        return HealthReport(verdict=Verdict.UNKNOWN, reason="the value is NaN", evidence=evidence)
    condition = f"{sample.value:g} {check.operator} {check.threshold:g}"
    if COMPARISONS[check.operator](sample.value, check.threshold):
        return HealthReport(verdict=Verdict.HEALTHY, reason=f"{condition} holds", evidence=evidence)
    return HealthReport(verdict=Verdict.UNHEALTHY, reason=f"{condition} does not hold", evidence=evidence)


def connect(url: str, timeout_s: float = 5.0) -> PrometheusConnect:
    """A client for :class:`PrometheusProbe` that fails fast: Temporal does the retrying."""
    return PrometheusConnect(
        url=url, timeout=timeout_s, retry=Retry(total=1, backoff_factor=0.2, status_forcelist=[502, 503])
    )


class PrometheusProbe:
    """The ``prometheus.*`` activities, reading from one Prometheus server."""

    def __init__(self, client: PrometheusConnect) -> None:
        self._client = client

    @activity.defn(name="prometheus.collect_evidence")
    def collect_evidence(self, request: EvidenceRequest) -> EvidenceReport:
        """Run each query; one Evidence per series, or one saying why there is none.

        Raises:
            ApplicationError: Prometheus cannot be reached (retryable).
        """
        evidence: list[Evidence] = []
        for query in request.queries:
            try:
                samples, evaluated_at = self.sample(query)
            except ApplicationError as error:
                if error.non_retryable:
                    evidence.append(_note(query, f"Prometheus rejected the query: {error.message}"))
                    continue
                raise
            evidence.extend(_evidence(query, sample) for sample in samples[:MAX_SERIES_PER_QUERY])
            if not samples:
                evidence.append(_note(query, "no samples", evaluated_at))
            elif len(samples) > MAX_SERIES_PER_QUERY:
                more = len(samples) - MAX_SERIES_PER_QUERY
                evidence.append(_note(query, f"{more} more series not kept", evaluated_at))
        return EvidenceReport(evidence=evidence)

    @activity.defn(name="prometheus.check_health")
    def check_health(self, check: HealthCheck) -> HealthReport:
        """Judge ``check.query`` against its condition; see :func:`judge`.

        Raises:
            ApplicationError: Prometheus cannot be reached (retryable), or rejects
                the query (non-retryable).
        """
        samples, evaluated_at = self.sample(check.query)
        report = judge(check, samples, evaluated_at)
        if report.verdict == Verdict.HEALTHY and check.changed_at is not None:
            report.first_met_at = self.first_met(check, evaluated_at)
        return report

    def first_met(self, check: HealthCheck, until: datetime) -> datetime | None:
        """When, after ``check.changed_at``, the condition began to hold without a break until ``until``.

        One range query over the span, at most ~500 steps (never finer than 1 s);
        the lag is a measurement, so a failed query gives None rather than failing
        the verification it accompanies.
        """
        assert check.changed_at is not None
        span = (until - check.changed_at).total_seconds()
        if span <= 0:
            return None
        try:
            result = self._client.custom_query_range(
                check.query, start_time=check.changed_at, end_time=until, step=f"{max(span / 500, 1.0):g}"
            )
        except (requests.RequestException, PrometheusApiClientException):
            return None
        if len(result) != 1:
            return None
        held_since = None
        for at, value in result[0]["values"]:
            held = COMPARISONS[check.operator](float(value), check.threshold)
            held_since = (held_since or at) if held else None
        return _time(held_since) if held_since is not None else None

    def sample(self, query: str) -> tuple[list[Sample], datetime]:
        """Evaluate ``query`` now; return its series with their scrape times, and the evaluation time."""
        result = self._query(query)
        if _is_scalar(result):
            at = _time(result[0])
            return [Sample(labels={}, value=float(result[1]), at=at)], at
        if not result:
            return [], datetime.now(UTC)
        if "value" not in result[0]:
            raise PrometheusQueryRejected.failure(
                f"{query!r} returns a range vector; health checks and evidence need an instant vector"
            )
        evaluated_at = result[0]["value"][0]
        scraped = self._query(f"timestamp({query})", evaluated_at)
        scraped_at = {_key(series["metric"]): float(series["value"][1]) for series in scraped}
        samples = [
            Sample(
                labels=series["metric"],
                value=float(series["value"][1]),
                at=_time(scraped_at.get(_key(series["metric"]), evaluated_at)),
            )
            for series in result
        ]
        return samples, _time(evaluated_at)

    def _query(self, query: str, at: float | None = None) -> list[Any]:
        params = {"time": repr(at)} if at is not None else None
        try:
            result: list[Any] = self._client.custom_query(query, params=params)
        except requests.RequestException as error:
            raise PrometheusUnavailable.failure(
                f"Prometheus at {self._client.url} is unreachable: {error}"
            ) from error
        except PrometheusApiClientException as error:
            found = _STATUS.search(str(error))
            status = int(found.group(1)) if found else 0
            kind = PrometheusQueryRejected if status in (400, 422) else PrometheusUnavailable
            raise kind.failure(f"{query!r}: {error}") from error
        return result


def _is_scalar(result: list[Any]) -> bool:
    """A scalar or string result is ``[time, value]`` rather than a list of series."""
    return len(result) == 2 and not isinstance(result[0], dict)


def _key(labels: Mapping[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset((name, value) for name, value in labels.items() if name != "__name__")


def _time(seconds: float | str) -> datetime:
    return datetime.fromtimestamp(float(seconds), UTC)


def _evidence(query: str, sample: Sample) -> Evidence:
    value: float | str = sample.value if math.isfinite(sample.value) else _NON_FINITE[str(sample.value)]
    return Evidence(source=SOURCE, query=query, value=value, at=sample.at, note=_series(sample.labels))


def _note(query: str, note: str, at: datetime | None = None) -> Evidence:
    return Evidence(source=SOURCE, query=query, at=at or datetime.now(UTC), note=note)


def _series(labels: Mapping[str, str]) -> str:
    """Render labels the way PromQL writes a series: ``name{label="value", ...}``."""
    name = labels.get("__name__", "")
    pairs = ", ".join(f'{key}="{value}"' for key, value in sorted(labels.items()) if key != "__name__")
    return f"{name}{{{pairs}}}" if pairs or not name else name
