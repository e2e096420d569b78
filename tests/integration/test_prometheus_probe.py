"""The Prometheus probe against real Prometheus scraping real exporters on loopback."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.prometheus import PrometheusProbe, connect
from sandbox.exporter import ServiceExporter
from sandbox.model import Observation
from sandbox.monitoring import Monitoring
from sandbox.ports import free_port
from suture.models import EvidenceRequest, HealthCheck, HealthReport, Verdict

pytestmark = pytest.mark.integration

HEALTHY = Observation(
    image="shop/checkout:1.4",
    replicas=2,
    latency_p99_s=0.2,
    error_ratio=0.01,
    memory_bytes=3e8,
    saturation_ratio=0.4,
)
SERVICES = ("checkout", "cart", "search")


@dataclass
class Estate:
    """Running exporters whose observations a test may change while Prometheus scrapes them."""

    monitoring: Monitoring
    probe: PrometheusProbe
    observations: dict[str, Observation] = field(default_factory=dict)
    exporters: dict[str, ServiceExporter] = field(default_factory=dict)

    def reporter(self, service: str) -> Callable[[], Observation]:
        return lambda: self.observations[service]


def latency(service: str) -> str:
    return f'sandbox_request_latency_p99_seconds{{namespace="shop",service="{service}"}}'


def within(seconds: float, probe: Callable[[], HealthReport], verdict: Verdict) -> HealthReport:
    """Poll until the probe returns ``verdict``; return the last report either way."""
    deadline = time.monotonic() + seconds
    report = probe()
    while report.verdict != verdict and time.monotonic() < deadline:
        time.sleep(0.2)
        report = probe()
    return report


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    state_dir: Path = tmp_path_factory.mktemp("monitoring")
    # Alerts are not under test here; Alertmanager's deliveries go nowhere.
    monitoring = Monitoring(state_dir, f"http://127.0.0.1:{free_port()}/alerts", "unused")
    estate = Estate(monitoring, PrometheusProbe(connect("http://unset")))
    for service in SERVICES:
        estate.observations[service] = HEALTHY
        exporter = ServiceExporter("shop", service, estate.reporter(service)).start()
        estate.exporters[service] = exporter
        monitoring.add_target(exporter.address, exporter.labels)
    with monitoring:
        estate.probe = PrometheusProbe(connect(monitoring.prometheus_url))
        for exporter in estate.exporters.values():
            monitoring.wait_until_scraped(exporter.address)
        yield estate
    for exporter in estate.exporters.values():
        exporter.stop()


def test_evidence_carries_the_exporters_value_and_a_recent_scrape_time(estate: Estate) -> None:
    report = estate.probe.collect_evidence(EvidenceRequest(queries=[latency("checkout")]))

    [evidence] = report.evidence
    assert evidence.source == "prometheus"
    assert evidence.query == latency("checkout")
    assert evidence.value == pytest.approx(0.2)
    assert datetime.now(UTC) - evidence.at < timedelta(seconds=5)
    assert 'service="checkout"' in evidence.note


def test_a_query_without_samples_is_recorded_as_evidence_without_a_value(estate: Estate) -> None:
    report = estate.probe.collect_evidence(EvidenceRequest(queries=[latency("no-such-service")]))

    [evidence] = report.evidence
    assert evidence.value is None
    assert evidence.note == "no samples"


def test_a_query_prometheus_rejects_is_noted_and_the_others_still_answer(estate: Estate) -> None:
    request = EvidenceRequest(queries=["sandbox_error_ratio{", latency("cart")])

    rejected, answered = estate.probe.collect_evidence(request).evidence

    assert rejected.value is None
    assert "rejected the query" in rejected.note
    assert answered.value == pytest.approx(0.2)


def test_the_verdict_follows_the_condition_as_the_service_changes(estate: Estate) -> None:
    check = HealthCheck(query=latency("cart"), operator="<", threshold=0.5, max_staleness_s=4)
    assert estate.probe.check_health(check).verdict == Verdict.HEALTHY

    estate.observations["cart"] = replace(HEALTHY, latency_p99_s=0.9)
    slow = within(5, lambda: estate.probe.check_health(check), Verdict.UNHEALTHY)
    assert slow.verdict == Verdict.UNHEALTHY
    assert slow.reason == "0.9 < 0.5 does not hold"

    estate.observations["cart"] = HEALTHY
    assert within(5, lambda: estate.probe.check_health(check), Verdict.HEALTHY).verdict == Verdict.HEALTHY


def test_several_series_where_one_is_expected_are_unknown(estate: Estate) -> None:
    check = HealthCheck(query='sandbox_replicas{namespace="shop"}', operator=">=", threshold=1)

    report = estate.probe.check_health(check)

    assert report.verdict == Verdict.UNKNOWN
    assert "series where one is expected" in report.reason


def test_the_health_check_runs_as_the_named_temporal_activity(estate: Estate) -> None:
    check = HealthCheck(query=f"max({latency('checkout')})", operator="<", threshold=0.5)

    report = ActivityEnvironment().run(estate.probe.check_health, check)

    assert report.verdict == Verdict.HEALTHY
    definition = getattr(PrometheusProbe.check_health, "__temporal_activity_definition")
    assert definition.name == "prometheus.check_health"


def test_a_stopped_exporter_makes_the_verdict_unknown_within_seconds(estate: Estate) -> None:
    check = HealthCheck(query=latency("search"), operator="<", threshold=0.5, max_staleness_s=4)
    assert estate.probe.check_health(check).verdict == Verdict.HEALTHY

    stopping = time.monotonic()
    estate.exporters["search"].stop()
    report = within(6, lambda: estate.probe.check_health(check), Verdict.UNKNOWN)
    print(f"exporter stopped -> verdict unknown in {time.monotonic() - stopping:.1f}s: {report.reason}")

    assert report.verdict == Verdict.UNKNOWN
    assert "no sample" in report.reason


def test_a_query_prometheus_rejects_fails_the_health_check_for_good(estate: Estate) -> None:
    check = HealthCheck(query="sandbox_error_ratio{", operator="<", threshold=0.05)

    with pytest.raises(ApplicationError) as raised:
        estate.probe.check_health(check)

    assert raised.value.non_retryable
    assert raised.value.type == "PrometheusQueryRejected"


def test_an_unreachable_prometheus_raises_an_error_temporal_retries() -> None:
    probe = PrometheusProbe(connect(f"http://127.0.0.1:{free_port()}", timeout_s=1))
    check = HealthCheck(query="up", operator="==", threshold=1)

    with pytest.raises(ApplicationError) as raised:
        probe.check_health(check)

    assert not raised.value.non_retryable
    assert raised.value.type == "PrometheusUnavailable"
