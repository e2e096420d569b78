"""Hostile alert labels cannot change a verification verdict, against real Prometheus.

Every service below is slow (p99 2.5 s against a '< 0.5' condition) and is
labelled with a hostile value, as an attacker who can name a workload would do.
The verification query built for each label must still select exactly that
service's series and judge it unhealthy; the same label pasted into the query
text (what suture once did) turns the verdict into healthy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from string import Template

import pytest

from activities.prometheus import PrometheusProbe, connect
from policies.queries import LabelRefused, build_query
from sandbox.exporter import ServiceExporter
from sandbox.model import Observation
from sandbox.monitoring import Monitoring
from sandbox.ports import free_port
from suture.models import HealthCheck, Verdict

pytestmark = pytest.mark.integration

SLOW = Observation(
    image="shop/checkout:1.5",
    replicas=2,
    latency_p99_s=2.5,
    error_ratio=0.01,
    memory_bytes=3e8,
    saturation_ratio=0.4,
)
TEMPLATE = 'sandbox_request_latency_p99_seconds{namespace="$namespace",service="$service"}'
CORPUS = [
    "checkout",
    'x"} * 0 or absent_x{a="',
    'checkout"} * 0 or x{a="',
    'checkout"} or vector(0) #',
    'checkout\\"} * 0 or x{a=\\"',
    "back\\slash\\",
    "}",
    " or ",
    "'single' and `raw`",
    "é🚀 ünïcödé",
    "$namespace",
]
REFUSED = ['checkout"}\n* 0 or x{a="', "checkout\r", "tab\there", "bidi\u202echeckout"]


@dataclass
class Estate:
    probe: PrometheusProbe


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    state_dir: Path = tmp_path_factory.mktemp("monitoring")
    monitoring = Monitoring(state_dir, f"http://127.0.0.1:{free_port()}/alerts", "unused")
    exporters = [ServiceExporter("shop", service, lambda: SLOW).start() for service in CORPUS]
    for exporter in exporters:
        monitoring.add_target(exporter.address, exporter.labels)
    with monitoring:
        for exporter in exporters:
            monitoring.wait_until_scraped(exporter.address)
        yield Estate(PrometheusProbe(connect(monitoring.prometheus_url)))
    for exporter in exporters:
        exporter.stop()


def verdict_of(estate: Estate, query: str) -> tuple[Verdict, list[float | None]]:
    report = estate.probe.check_health(
        HealthCheck(query=query, operator="<", threshold=0.5, max_staleness_s=5)
    )
    return report.verdict, [evidence.value for evidence in report.evidence]


@pytest.mark.parametrize("service", CORPUS)
def test_a_built_query_selects_only_the_labelled_service_and_stays_unhealthy(
    estate: Estate, service: str
) -> None:
    query = build_query(TEMPLATE, {"namespace": "shop", "service": service})
    verdict, values = verdict_of(estate, query)
    assert verdict == Verdict.UNHEALTHY
    assert values == [2.5]


@pytest.mark.parametrize("service", CORPUS[1:])
def test_a_hostile_label_of_a_service_that_does_not_exist_gives_unknown_never_healthy(
    estate: Estate, service: str
) -> None:
    query = build_query(TEMPLATE, {"namespace": "elsewhere", "service": service})
    assert verdict_of(estate, query)[0] == Verdict.UNKNOWN


@pytest.mark.parametrize("service", REFUSED)
def test_a_label_with_control_characters_never_reaches_prometheus(service: str) -> None:
    with pytest.raises(LabelRefused):
        build_query(TEMPLATE, {"namespace": "shop", "service": service})


def test_the_same_label_pasted_into_the_query_would_have_passed_verification(estate: Estate) -> None:
    pasted = Template(TEMPLATE).safe_substitute(namespace="shop", service='checkout"} * 0 or x{a="')
    assert verdict_of(estate, pasted)[0] == Verdict.HEALTHY
