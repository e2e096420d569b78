"""A fake dependency graph for workflow tests, on top of :mod:`tests.workflow.fakes`.

``graph.correlate`` answers with the storm verdict a test sets (a root, or none),
``graph.dependents`` with the dependents it lists; everything else is the fake world.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio import activity

from policies.graph import Dependents, DependentsQuery, StormQuery, StormVerdict
from suture.models import AlertNotice
from tests.workflow.fakes import FakeWorld, load_test_policies

POLICIES = """
policies:
  - name: downstream-errors
    match: {alertname: HighErrorRate}
    mode: autonomous
    min_confidence: 0.7
    signatures:
      - {name: regression-after-rollout, recent_rollout_within: 30m, confidence: 0.85}
    actions:
      - type: k8s.rollback
    verify: {query: 'errors{service="$service"}', condition: '< 0.05', window: 1s}
    storm: {min_alerts: 3, gather: 1s}
  - name: storm-root
    match: {alertname: DependencyStorm}
    mode: autonomous
    min_confidence: 0.7
    signatures:
      - {name: regression-after-rollout, recent_rollout_within: 30m, confidence: 0.85}
    actions:
      - type: k8s.rollback
    verify: {query: 'errors{service="$service"}', condition: '< 0.05', window: 1s}
  - name: shared-gateway-restart
    match: {alertname: GatewayMemory}
    mode: autonomous
    min_confidence: 0.7
    signatures:
      - {name: linear-memory-growth, confidence: 0.8}
    actions:
      - type: k8s.restart
    verify: {query: 'memory{service="$service"}', condition: '< 1e9', window: 30s}
    max_dependents: 2
    approval: {approvers: [alice], timeout: 1h}
"""
"""A storm policy for the downstream alerts, the policy its root is fixed under, and a
gateway restart capped by its dependents. Timers are a second long: storm runs go to
the dev server, whose clock is real."""


@dataclass
class FakeGraph(FakeWorld):
    """The fake world with a dependency graph: a storm verdict and a list of dependents."""

    verdict: StormVerdict = field(default_factory=lambda: StormVerdict(storm_id=None, reason="alone"))
    dependents: list[str] = field(default_factory=list)
    correlating: int = 0
    """How many runs must ask ``graph.correlate`` before any is answered: the storm arrives at once."""
    asked: list[StormQuery] = field(default_factory=list)

    def activities(self) -> list[Any]:
        world = self

        @activity.defn(name="graph.correlate")
        async def correlate(query: StormQuery) -> StormVerdict:
            world.asked.append(query)
            while len(world.asked) < world.correlating:
                await asyncio.sleep(0.02)
            return world.verdict

        @activity.defn(name="graph.dependents")
        async def dependents(query: DependentsQuery) -> Dependents:
            world.note("graph.dependents", query)
            return Dependents(service=query.service, dependents=world.dependents)

        return [*super().activities(), correlate, dependents]


def graph_world(tmp_path: Path, **kwargs: Any) -> FakeGraph:
    return FakeGraph(policies=load_test_policies(tmp_path, POLICIES), **kwargs)


def alert(service: str, name: str = "HighErrorRate") -> AlertNotice:
    return AlertNotice(
        fingerprint=uuid.uuid4().hex[:16],
        status="firing",
        labels={"alertname": name, "namespace": "shop", "service": service, "deployment": service},
        annotations={"summary": f"{service} fails"},
        starts_at=datetime.now(UTC),
        received_at=datetime.now(UTC),
    )
