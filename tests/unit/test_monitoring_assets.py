"""suture's own alert rules and Grafana dashboard: valid, and only about metrics suture exports."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from suture.metrics import REGISTRY
from workers.ingress import IngressMetrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "suture-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "suture.json"
ALERTS = {
    "SutureWorkerDown",
    "SutureRunsStuckAwaitingApproval",
    "SutureUndoRateRising",
    "SutureKillSwitchPulledForLong",
    "SutureAuditChainNotAdvancing",
}


def exported() -> set[str]:
    """Every series name the worker and the ingress export, plus Prometheus's own ``up``."""
    names = {"up", "suture_audit_chain_head_seq", "suture_kill_switch_paused"}
    for registry in (REGISTRY, IngressMetrics().registry):
        for family in registry.collect():
            names |= {family.name, *(sample.name for sample in family.samples)}
            if family.type == "counter":
                names.add(f"{family.name}_total")
            if family.type == "histogram":
                names |= {f"{family.name}_{part}" for part in ("bucket", "sum", "count")}
    return names


def selectors(node: Any) -> Iterator[str]:
    """The metric names a parsed PromQL expression selects."""
    if type(node).__name__ == "VectorSelector":
        yield node.name
    for attribute in ("lhs", "rhs", "expr", "vector_selector", "param"):
        child = getattr(node, attribute, None)
        if child is not None and not isinstance(child, str | int | float):
            yield from selectors(child)
    for child in getattr(node, "args", None) or []:
        yield from selectors(child)


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool comes with Debian's prometheus")
def test_promtool_accepts_the_alert_rules() -> None:
    result = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def test_the_rules_cover_worker_down_stuck_approvals_undos_the_kill_switch_and_the_audit_chain() -> None:
    assert {rule["alert"] for rule in rules()} == ALERTS
    for rule in rules():
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]


def test_every_rule_and_panel_queries_only_metrics_suture_exports() -> None:
    queries = [rule["expr"] for rule in rules()] + dashboard_queries()
    known = exported()
    for query in queries:
        names = set(selectors(promql_parser.parse(query.replace("$__rate_interval", "5m"))))
        unknown = {name for name in names if not name.startswith("temporal_")} - known
        assert names and not unknown, f"{query} selects {unknown or 'nothing'}"


def test_the_dashboard_shows_runs_outcomes_actions_mttr_approvals_and_the_kill_switch() -> None:
    selected = {
        name
        for query in dashboard_queries()
        for name in selectors(promql_parser.parse(query.replace("$__rate_interval", "5m")))
    }
    assert {
        "suture_runs_started_total",
        "suture_runs_closed_total",
        "suture_actions_total",
        "suture_undos_total",
        "suture_mttr_seconds_bucket",
        "suture_time_to_first_action_seconds_bucket",
        "suture_runs_awaiting_approval",
        "suture_kill_switch_paused",
        "suture_audit_chain_head_seq",
    } <= selected
    assert any(name.startswith("temporal_") for name in selected), "the SDK's worker metrics too"
