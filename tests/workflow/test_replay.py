"""Recorded drill histories must replay against the current workflow code.

A change that makes a workflow non-deterministic (reordering activities, adding a
timer without versioning) would break every run in flight; replaying the
histories recorded from the drills catches it here. Re-record after an
intentional, versioned change with ``SUTURE_RECORD_HISTORIES=1 pytest tests/drills``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workers.worker import all_workflows

HISTORIES = sorted((Path(__file__).parents[1] / "histories").glob("*.json"))


def test_there_are_recorded_histories_of_the_drills() -> None:
    names = {path.stem for path in HISTORIES}
    assert {
        "bad-deploy-latency",
        "rollback-does-not-help",
        "stale-metrics",
        "approval-timeout",
        "leaked-access-key",
        "shared-credential-anomaly",
    } <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[path.stem for path in HISTORIES])
async def test_a_recorded_drill_history_replays_deterministically(path: Path) -> None:
    events = json.loads(path.read_text())
    history = WorkflowHistory.from_json(f"replay-{path.stem}", events)
    replayer = Replayer(workflows=all_workflows(), data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
