"""docker-compose.yml describes the same system the code defaults to."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import yaml

from suture.config import ENVIRONMENT, Settings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def published(service: dict) -> set[int]:
    return {int(str(port).split(":")[-1]) for port in service.get("ports", [])}


def host_ports(service: dict) -> set[int]:
    return {int(str(port).split(":")[0]) for port in service.get("ports", [])}


def test_compose_describes_every_component_of_the_design() -> None:
    services = compose()["services"]
    for name in (
        "postgresql",
        "temporal",
        "temporal-ui",
        "prometheus",
        "alertmanager",
        "suture-worker",
        "suture-ingress",
    ):
        assert name in services, name


def test_compose_ports_agree_with_the_code_defaults() -> None:
    services, defaults = compose()["services"], Settings()
    assert int(defaults.temporal_address.rsplit(":", 1)[1]) in published(services["temporal"])
    assert urlparse(defaults.prometheus_url).port in host_ports(services["prometheus"])
    assert defaults.ingress_port in host_ports(services["suture-ingress"])
    assert 8233 in host_ports(services["temporal-ui"]), "the UI is on 8233, as with `suture up`"


def test_compose_sets_only_variables_suture_reads() -> None:
    services = compose()["services"]
    known = set(ENVIRONMENT.values())
    for name in ("suture-worker", "suture-ingress"):
        assert set(services[name]["environment"]) <= known, name
    assert services["suture-worker"]["environment"]["SUTURE_TASK_QUEUE"] == Settings().task_queue


def test_alertmanager_routes_to_the_ingress_with_a_bearer_token() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "alertmanager.yml").read_text())
    webhook = config["receivers"][0]["webhook_configs"][0]
    assert urlparse(webhook["url"]).path == "/alerts/alertmanager"
    assert urlparse(webhook["url"]).port == Settings().ingress_port
    assert webhook["send_resolved"] is True
    assert webhook["http_config"]["authorization"]["type"] == "Bearer"
