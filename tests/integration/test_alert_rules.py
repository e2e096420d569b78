"""suture's alert rules, loaded into a real Prometheus that scrapes a real suture metrics endpoint.

The test copy of the rules differs from deploy/prometheus/suture-rules.yml only in
``for:`` (one second instead of hours) and in the evaluation interval, so that a kill
switch pulled now, and a worker that is not there, fire while the test watches.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from activities.audit import AuditActivities
from sandbox.monitoring import PROMETHEUS_ENV, find_binary
from suture.audit_chain import AuditKey
from suture.store import AuditStore
from workers.devserver import free_port
from workers.metrics import MetricsServer

pytestmark = pytest.mark.integration

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "suture-rules.yml"


def quick_rules(folder: Path) -> Path:
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "1s"
    path = folder / "suture-rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


@pytest.fixture
def worker_metrics(tmp_path: Path) -> Iterator[MetricsServer]:
    """A worker's metrics endpoint over an audit store whose global kill switch is pulled."""
    store = AuditStore.create(f"sqlite:///{tmp_path / 'suture.db'}", key=AuditKey(b"r" * 32))
    AuditActivities(store)
    store.pause("all", by="alice", reason="incident review")
    server = MetricsServer("127.0.0.1", free_port())
    server.start()
    yield server
    server.stop()
    store.close()


@pytest.fixture
def prometheus(tmp_path: Path, worker_metrics: MetricsServer) -> Iterator[str]:
    dead_worker = f"127.0.0.1:{free_port()}"
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(quick_rules(tmp_path))],
        "scrape_configs": [
            {
                "job_name": "suture-worker",
                "static_configs": [{"targets": [f"127.0.0.1:{worker_metrics.port}", dead_worker]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [
            find_binary(PROMETHEUS_ENV, "prometheus"),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(url), "Prometheus ready")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"never: {what}")


def firing(prometheus: str) -> dict[str, list[dict[str, str]]]:
    alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    found: dict[str, list[dict[str, str]]] = {}
    for alert in alerts:
        if alert["state"] == "firing":
            found.setdefault(alert["labels"]["alertname"], []).append(alert["labels"])
    return found


def test_a_pulled_kill_switch_and_a_dead_worker_fire_their_alerts(
    prometheus: str, worker_metrics: MetricsServer
) -> None:
    wait_until(
        lambda: {"SutureKillSwitchPulledForLong", "SutureWorkerDown"} <= set(firing(prometheus)),
        "the kill switch and worker-down alerts fire",
    )
    alerts = firing(prometheus)
    assert [labels["scope"] for labels in alerts["SutureKillSwitchPulledForLong"]] == ["all"]
    (down,) = alerts["SutureWorkerDown"]
    assert down["instance"] != f"127.0.0.1:{worker_metrics.port}", "the live worker is not down"
    assert "SutureRunsStuckAwaitingApproval" not in alerts
