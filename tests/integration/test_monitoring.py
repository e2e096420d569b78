"""The sandbox's monitoring: real Prometheus and Alertmanager delivering to a real webhook."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from sandbox.exporter import ServiceExporter
from sandbox.model import Observation
from sandbox.monitoring import Monitoring, MonitoringError
from suture.errors import ConfigError

TOKEN = "drill-token"
HEALTHY = Observation(
    image="shop/checkout:1.4",
    replicas=2,
    latency_p99_s=0.2,
    error_ratio=0.01,
    memory_bytes=3e8,
    saturation_ratio=0.4,
)
AGGREGATION = re.compile(r"\b(sum|avg|min|max|count|by|without)\s*\(")
RULES = Path(__file__).parents[2] / "sandbox" / "rules.yaml"


@dataclass
class Delivery:
    received: float
    authorization: str
    payload: dict[str, Any]


@dataclass
class Webhook:
    """A real HTTP receiver standing in for suture's ingress."""

    server: HTTPServer
    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return self.server.url_for("/alerts/alertmanager")

    def receive(self, request: Request) -> Response:
        delivery = Delivery(time.monotonic(), request.headers.get("Authorization", ""), request.get_json())
        with self.lock:
            self.deliveries.append(delivery)
        return Response(status=200)

    def wait_for(self, matches: Callable[[dict[str, Any]], bool], timeout_s: float) -> Delivery:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                found = [d for d in self.deliveries if matches(d.payload)]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no matching webhook within {timeout_s}s; got {self.deliveries}")


@dataclass
class Service:
    """What a simulated service reports; a test changes it while Prometheus scrapes."""

    observation: Observation = HEALTHY

    def __call__(self) -> Observation:
        return self.observation


@dataclass
class Estate:
    monitoring: Monitoring
    webhook: Webhook
    checkout: Service
    exporter: ServiceExporter
    spare: ServiceExporter


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    with HTTPServer(host="127.0.0.1", port=0) as server:
        webhook = Webhook(server)
        server.expect_request("/alerts/alertmanager", method="POST").respond_with_handler(webhook.receive)
        monitoring = Monitoring(tmp_path_factory.mktemp("monitoring"), webhook.url, TOKEN)
        checkout = Service()
        estate = Estate(
            monitoring,
            webhook,
            checkout,
            ServiceExporter("shop", "checkout", checkout).start(),
            ServiceExporter("shop", "cart", Service()).start(),
        )
        with monitoring:
            # Both targets join while Prometheus runs, as services do during a drill.
            for exporter in (estate.exporter, estate.spare):
                monitoring.add_target(exporter.address, exporter.labels)
            for exporter in (estate.exporter, estate.spare):
                monitoring.wait_until_scraped(exporter.address)
            yield estate
        estate.exporter.stop()
        estate.spare.stop()


def alert_state(monitoring: Monitoring, alertname: str) -> str | None:
    alerts = httpx.get(f"{monitoring.prometheus_url}/api/v1/alerts").json()["data"]["alerts"]
    states = [a["state"] for a in alerts if a["labels"]["alertname"] == alertname]
    return states[0] if states else None


def wait_for_state(monitoring: Monitoring, alertname: str, state: str | None, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while alert_state(monitoring, alertname) != state:
        assert time.monotonic() < deadline, f"{alertname} did not become {state} within {timeout_s}s"
        time.sleep(0.05)
    return time.monotonic()


def is_latency(status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda payload: (
        payload["status"] == status and payload["groupLabels"].get("alertname") == "SandboxHighLatency"
    )


@pytest.mark.integration
def test_a_latency_alert_reaches_the_webhook_with_the_token_and_resolves_when_latency_recovers(
    estate: Estate,
) -> None:
    estate.checkout.observation = replace(HEALTHY, latency_p99_s=0.9)
    degraded = time.monotonic()
    firing_at = wait_for_state(estate.monitoring, "SandboxHighLatency", "firing", 15)
    fired = estate.webhook.wait_for(is_latency("firing"), 15)
    print(
        f"latency raised -> alert firing {firing_at - degraded:.1f}s -> "
        f"webhook {fired.received - firing_at:.1f}s later"
    )

    assert fired.authorization == f"Bearer {TOKEN}"
    payload = fired.payload
    assert payload["version"] == "4"
    assert payload["receiver"] == "suture"
    assert payload["groupLabels"] == {
        "alertname": "SandboxHighLatency",
        "namespace": "shop",
        "service": "checkout",
    }
    [alert] = payload["alerts"]
    assert alert["status"] == "firing"
    assert alert["fingerprint"]
    assert {"namespace": "shop", "service": "checkout", "deployment": "checkout"}.items() <= alert[
        "labels"
    ].items()
    assert alert["annotations"]["summary"] == "shop/checkout p99 latency is 0.90s"
    assert alert["annotations"]["description"]

    estate.checkout.observation = HEALTHY
    recovered = time.monotonic()
    resolved = estate.webhook.wait_for(is_latency("resolved"), 15)
    print(f"latency recovered -> resolved webhook in {resolved.received - recovered:.1f}s")

    assert resolved.authorization == f"Bearer {TOKEN}"
    assert resolved.payload["alerts"][0]["fingerprint"] == alert["fingerprint"]
    assert resolved.payload["alerts"][0]["endsAt"] > alert["startsAt"]


@pytest.mark.integration
def test_a_removed_target_is_no_longer_scraped(estate: Estate) -> None:
    address = estate.spare.address
    assert result(estate.monitoring, f'up{{instance="{address}"}} == 1')

    estate.monitoring.remove_target(address)

    deadline = time.monotonic() + 15
    while result(estate.monitoring, f'up{{instance="{address}"}}'):
        assert time.monotonic() < deadline, "the removed target is still scraped"
        time.sleep(0.2)
    assert [group["targets"] for group in json.loads(estate.monitoring.targets_file.read_text())] == [
        [estate.exporter.address]
    ]


def result(monitoring: Monitoring, query: str) -> list[Any]:
    response = httpx.get(f"{monitoring.prometheus_url}/api/v1/query", params={"query": query})
    data: list[Any] = response.json()["data"]["result"]
    return data


@pytest.mark.integration
def test_a_server_that_dies_at_start_is_named_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUTURE_ALERTMANAGER_BIN", shutil.which("false") or "/bin/false")
    monitoring = Monitoring(tmp_path, "http://127.0.0.1:9/alerts", TOKEN)

    with pytest.raises(MonitoringError) as raised:
        monitoring.start()

    assert "false exited during start-up" in str(raised.value)
    assert str(tmp_path / "alertmanager.log") in str(raised.value)


def test_a_missing_binary_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUTURE_PROMETHEUS_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)

    with pytest.raises(ConfigError, match="apt-get install prometheus prometheus-alertmanager"):
        Monitoring(tmp_path, "http://127.0.0.1:9/alerts", TOKEN)


def test_a_binary_set_in_the_environment_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUTURE_PROMETHEUS_BIN", str(tmp_path / "prometheus"))

    with pytest.raises(ConfigError, match="SUTURE_PROMETHEUS_BIN"):
        Monitoring(tmp_path, "http://127.0.0.1:9/alerts", TOKEN)


def test_every_drill_alert_carries_the_labels_and_annotations_a_run_needs() -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]

    assert {rule["alert"] for rule in rules} == {
        "SandboxHighLatency",
        "SandboxHighErrorRate",
        "SandboxMemoryLeak",
        "SandboxSaturation",
        "SandboxDiskPressureNovel",
        "SandboxUpstreamErrors",
        "SandboxConsumerLag",
    }
    for rule in rules:
        assert rule["for"] == "2s"
        assert {"summary", "description"} <= rule["annotations"].keys()
        # Aggregating would drop the labels that name the Deployment.
        assert not AGGREGATION.search(rule["expr"]), rule["expr"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_the_rules_file_is_valid_for_prometheus() -> None:
    checked = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.integration
def test_an_exporter_serves_its_services_metrics_with_the_deployment_labels() -> None:
    inodes = ServiceExporter("shop", "checkout", Service(), extra=lambda: {"sandbox_disk_inode_ratio": 0.97})
    with inodes:
        page = httpx.get(inodes.url).text

    labels = 'deployment="checkout",namespace="shop",service="checkout"'
    assert f"sandbox_request_latency_p99_seconds{{{labels}}} 0.2" in page
    image = 'image="shop/checkout:1.4"'
    assert (
        f'sandbox_build_info{{deployment="checkout",{image},namespace="shop",service="checkout"}} 1.0' in page
    )
    assert f"sandbox_disk_inode_ratio{{{labels}}} 0.97" in page
    for name in (
        "sandbox_error_ratio",
        "sandbox_memory_bytes",
        "sandbox_saturation_ratio",
        "sandbox_replicas",
    ):
        assert f"{name}{{{labels}}}" in page


@pytest.mark.integration
def test_an_exporter_with_nothing_to_report_serves_no_series() -> None:
    with ServiceExporter("shop", "checkout", lambda: None) as silent:
        page = httpx.get(silent.url).text

    assert "sandbox_" not in page


@pytest.mark.integration
def test_a_stopped_exporter_refuses_connections() -> None:
    exporter = ServiceExporter("shop", "checkout", Service()).start()
    url = exporter.url
    exporter.stop()

    with pytest.raises(httpx.ConnectError):
        httpx.get(url)
