"""The dependency graph: what it answers, how its sources merge, and how dependencies.yaml is checked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from policies.graph import (
    DependencyGraph,
    Edge,
    EdgeSource,
    InvalidDependencies,
    load_declared_edges,
    merge_edges,
    parse_depends_on,
    storm_id,
)
from policies.loading import load_policies

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def edge(source: str, target: str, seen: EdgeSource = EdgeSource.DECLARED, at: datetime = NOW) -> Edge:
    return Edge(source=source, target=target, sources=[seen], last_seen=at)


def test_dependents_include_callers_of_callers_nearest_first() -> None:
    calls = [("shop/web", "shop/checkout"), ("shop/checkout", "shop/db"), ("shop/api", "shop/db")]
    graph = DependencyGraph(edges=[edge(source, target) for source, target in calls])
    assert graph.dependents("shop/db") == ["shop/api", "shop/checkout", "shop/web"]
    assert graph.upstreams("shop/checkout") == ["shop/db"]


def test_an_edge_seen_by_two_sources_keeps_both_and_the_latest_sighting() -> None:
    later = NOW + timedelta(minutes=5)
    merged = merge_edges([edge("a/x", "a/y"), edge("a/x", "a/y", EdgeSource.TRAFFIC, later)])
    assert [(e.sources, e.last_seen) for e in merged] == [([EdgeSource.DECLARED, EdgeSource.TRAFFIC], later)]


def test_the_depends_on_annotation_names_services_of_its_own_namespace_unless_qualified() -> None:
    assert parse_depends_on("shop", "payments, inventory,ops/ledger") == [
        "shop/payments",
        "shop/inventory",
        "ops/ledger",
    ]


def test_declared_edges_are_read_from_dependencies_yaml(tmp_path: Path) -> None:
    (tmp_path / "dependencies.yaml").write_text(
        "services:\n  - name: shop/checkout\n    calls: [shop/payments, shop/db]\n"
    )
    edges = load_declared_edges([tmp_path], NOW)
    assert [(e.source, e.target, e.sources) for e in edges] == [
        ("shop/checkout", "shop/payments", [EdgeSource.DECLARED]),
        ("shop/checkout", "shop/db", [EdgeSource.DECLARED]),
    ]


def test_a_typo_in_dependencies_yaml_is_named_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "dependencies.yaml"
    path.write_text("services:\n  - name: shop/checkout\n    cals: [shop/db]\n")
    with pytest.raises(InvalidDependencies, match=rf"{path}:3: .*unknown key 'cals'"):
        load_declared_edges([tmp_path], NOW)


def test_a_callee_without_namespace_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "dependencies.yaml"
    path.write_text("services:\n  - name: shop/checkout\n    calls:\n      - db\n")
    with pytest.raises(InvalidDependencies, match=rf"{path}:4: 'db' is not namespace/name"):
        load_declared_edges([tmp_path], NOW)


def test_the_policy_loader_leaves_dependencies_yaml_alone(tmp_path: Path) -> None:
    (tmp_path / "dependencies.yaml").write_text("services: []\n")
    assert load_policies([tmp_path]) == []


def test_every_alert_of_one_storm_names_the_same_storm_run() -> None:
    first = storm_id("shop", "SandboxDependencyErrors", "shop/db", NOW, 600)
    assert first == storm_id("shop", "SandboxDependencyErrors", "shop/db", NOW + timedelta(seconds=1), 600)
    assert first != storm_id("shop", "SandboxDependencyErrors", None, NOW, 600)
