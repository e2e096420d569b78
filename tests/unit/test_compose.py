"""docker-compose.yml describes the same system the code defaults to."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from typer.testing import CliRunner

from suture.config import ENVIRONMENT, Settings
from workers.cli import app

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
    known = set(ENVIRONMENT.values()) | EXTRA_VARIABLES | AWS_CHAIN
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


# --- a stack that works as written --------------------------------------------------------

EXTRA_VARIABLES = {"SUTURE_METRICS_PORT", "SUTURE_LOG_FORMAT"}
"""What suture reads besides the settings: the worker's metrics port and the log format."""
AWS_CHAIN = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
}
ONE_SHOT = {"temporal-setup"}
SUTURE_SERVICES = ("suture-worker", "suture-ingress")


@pytest.mark.skipif(
    not shutil.which("docker-compose"), reason="Debian's docker-compose (make test installs it)"
)
def test_docker_compose_accepts_the_file_with_the_example_env_file() -> None:
    result = subprocess.run(
        ["docker-compose", "--env-file", "deploy/compose.env.example", "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")},
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", SUTURE_SERVICES)
def test_every_suture_service_runs_a_command_the_cli_has(name: str) -> None:
    program, *args = compose()["services"][name]["command"]
    assert program == "suture"
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output


def test_every_long_running_service_restarts_and_has_a_healthcheck() -> None:
    for name, service in compose()["services"].items():
        if name in ONE_SHOT:
            continue
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"], name


def test_services_wait_for_what_they_need_to_be_healthy_not_just_started() -> None:
    for name, service in compose()["services"].items():
        for dependency, condition in service.get("depends_on", {}).items():
            wanted = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert condition == {"condition": wanted}, f"{name} -> {dependency}"
    for name in SUTURE_SERVICES:
        assert "temporal-setup" in compose()["services"][name]["depends_on"], name


def test_suture_services_get_aws_credentials_and_run_as_the_kubeconfig_owner() -> None:
    for name in SUTURE_SERVICES:
        service = compose()["services"][name]
        assert set(service["environment"]) >= AWS_CHAIN, name
        assert service["user"].startswith("${SUTURE_UID"), name
        assert any(volume.endswith(":/kube:ro") for volume in service["volumes"]), name


def test_alertmanager_sends_the_token_the_ingress_requires_from_the_same_env() -> None:
    services = compose()["services"]
    config = yaml.safe_load((ROOT / "deploy" / "alertmanager.yml").read_text())
    authorization = config["receivers"][0]["webhook_configs"][0]["http_config"]["authorization"]
    token_file = authorization["credentials_file"]
    assert "credentials" not in authorization
    manager = services["alertmanager"]
    assert manager["environment"]["SUTURE_WEBHOOK_TOKEN"].startswith("${SUTURE_WEBHOOK_TOKEN")
    assert services["suture-ingress"]["environment"]["SUTURE_WEBHOOK_TOKEN"].startswith(
        "${SUTURE_WEBHOOK_TOKEN"
    )
    script = " ".join(manager["command"])
    assert f'"$$SUTURE_WEBHOOK_TOKEN" > {token_file}' in script
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in script


def test_prometheus_loads_sutures_rules_and_scrapes_the_worker_the_ingress_and_a_workload() -> None:
    prometheus = compose()["services"]["prometheus"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    mounted = {volume.split(":")[1] for volume in prometheus["volumes"]}
    rules = [path for path in mounted if path.startswith("/etc/prometheus/rules/")]
    assert rules and all(fnmatch.fnmatch(path, config["rule_files"][0]) for path in rules)
    targets = {
        job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets["suture-worker"] == ["suture-worker:9464"]
    assert targets["suture-ingress"] == [f"suture-ingress:{Settings().ingress_port}"]
    assert set(targets) - {"suture-worker", "suture-ingress"}, "a workload to watch besides suture"


def test_the_image_is_built_in_stages_runs_unprivileged_and_leaves_the_sandbox_out() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.count("\nFROM ") + dockerfile.startswith("FROM ") >= 2
    user = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)[-1]
    assert not user.startswith(("root", "0"))
    installs = re.findall(r"pip (?:install|wheel)[^\n]*", dockerfile)
    assert installs and not any("sandbox" in line or "dev" in line for line in installs)
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".suture", ".pytest_cache", ".env"} <= ignored
