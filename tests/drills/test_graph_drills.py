"""The graph drills end to end, and the graph of ``suture up --sandbox``.

The four drills run with the other reliability drills on the session's stack
(each in a namespace of its own); each test checks one against its row. The last
test starts the living sandbox and reads its graph through ``suture graph --json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sandbox.drill import DrillResult
from suture.config import Settings
from suture.models import LoopResult

pytestmark = [pytest.mark.drill, pytest.mark.asyncio(loop_scope="session")]
SUTURE = str(Path(sys.executable).parent / "suture")


def outcome(results: tuple[dict[str, DrillResult], LoopResult], name: str) -> DrillResult:
    result = results[0][name]
    assert result.passed, json.dumps(result.model_dump(mode="json"), indent=1)
    return result


async def test_a_storm_behind_a_recently_deployed_upstream_is_fixed_once_on_it(reliability) -> None:  # type: ignore[no-untyped-def]
    result = outcome(reliability, "shared-dependency-storm")
    assert result.outcome == "resolved" and result.verified
    assert [(a.type, a.target) for a in result.actions] == [("k8s.rollback", "fanout/catalog")]
    assert result.checks["six alerts joined the run on the upstream as evidence"]
    assert result.checks["at most one briefing"]


async def test_a_storm_with_no_changed_upstream_gets_one_briefing_and_no_action(reliability) -> None:  # type: ignore[no-untyped-def]
    result = outcome(reliability, "unclear-root-storm")
    assert result.outcome == "escalated" and result.actions == []
    assert result.checks["one briefing for the storm"]


async def test_a_restart_with_more_dependents_than_allowed_waits_and_lists_them(reliability) -> None:  # type: ignore[no-untyped-def]
    result = outcome(reliability, "wide-blast-radius")
    assert result.outcome == "escalated" and result.actions == []
    assert result.checks["the restart waited for approval"]
    assert result.checks["the briefing lists the four dependents"]


async def test_a_poison_batch_is_quarantined_and_the_consumer_catches_up(reliability) -> None:  # type: ignore[no-untyped-def]
    result = outcome(reliability, "kafka-poison-messages")
    assert result.outcome == "resolved" and result.verified
    assert [a.type for a in result.actions] == ["kafka.quarantine", "k8s.scale"]
    assert result.checks["the poison batch is in the dead-letter topic with its offsets"]
    assert result.checks["lag is back under its baseline"]


async def test_suture_graph_on_the_living_sandbox_shows_edges_from_every_source(tmp_path: Path) -> None:
    from sandbox.living import LivingStack

    state_dir = tmp_path / "state"
    settings = Settings(state_dir=state_dir)
    async with LivingStack(state_dir, settings=settings, sandbox=True, inbox=False) as stack:
        environment = {
            **os.environ,
            "SUTURE_STATE_DIR": str(state_dir),
            "TEMPORAL_ADDRESS": stack.temporal_address,
        }
        graph = await _graph_with_every_source(environment)
    by_source = {
        source: {(e["source"], e["target"]) for e in graph["edges"] if source in e["sources"]}
        for source in ("declared", "kubernetes", "traffic")
    }
    assert ("shop/checkout", "shop/payments") in by_source["declared"]
    assert ("shop/cart", "shop/payments") in by_source["kubernetes"]
    assert ("shop/checkout", "shop/cart") in by_source["traffic"]
    assert all(edge["last_seen"] for edge in graph["edges"])


async def _graph_with_every_source(environment: dict[str, str], timeout_s: float = 90.0) -> Any:
    """``suture graph --refresh --json`` until traffic has been scraped twice and shows up."""
    deadline = time.monotonic() + timeout_s
    while True:
        done = await asyncio.to_thread(
            subprocess.run,
            [SUTURE, "graph", "--refresh", "--json"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        graph = json.loads(done.stdout)
        sources = {source for edge in graph["edges"] for source in edge["sources"]}
        if sources >= {"declared", "kubernetes", "traffic"} or time.monotonic() > deadline:
            return graph
        await asyncio.sleep(2)
