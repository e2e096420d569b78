"""A killed worker and a restarted server lose no run and repeat no side effect."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client

from suture.identity import reliability_workflow_id
from suture.models import LoopResult, Outcome, ReliabilityLoopInput
from tests.workflow.test_reliability_loop import POLICY, alert
from workers.devserver import DevServer
from workers.temporal_client import connect
from workflows.reliability import ReliabilityLoop

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def spawn_worker(address: str, queue: str, policy: Path, journal: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.durability_worker",
            address,
            queue,
            str(policy),
            str(journal),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "polling"
    return process


async def wait_for_step(client: Client, workflow_id: str, step: str) -> None:
    handle = client.get_workflow_handle(workflow_id)
    for _ in range(300):
        if (await handle.query(ReliabilityLoop.status)).step == step:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id} never reached {step}")


async def test_a_run_survives_a_killed_worker_and_a_restarted_server_without_acting_twice(
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace("{mode}", "autonomous").replace("window: 30s", "window: 8s"))
    journal, queue, notice = tmp_path / "journal", f"durability-{uuid.uuid4().hex}", alert()
    server = DevServer(tmp_path / "temporal", headless=True).start()
    worker = spawn_worker(server.address, queue, policy, journal)
    try:
        client = await connect(server.address)
        handle = await client.start_workflow(
            ReliabilityLoop.run,
            ReliabilityLoopInput(alert=notice),
            id=reliability_workflow_id(notice),
            task_queue=queue,
        )
        await wait_for_step(client, handle.id, "verifying")
        worker.kill()  # SIGKILL while the run waits out its propagation window
        worker.wait()
        server.stop()
        server = DevServer(tmp_path / "temporal", port=server.port, headless=True).start()
        worker = spawn_worker(server.address, queue, policy, journal)
        client = await connect(server.address)
        result = await client.get_workflow_handle(handle.id, result_type=LoopResult).result()
    finally:
        worker.kill()
        server.stop()
    assert result.outcome == Outcome.RESOLVED
    calls = journal.read_text().split()
    assert calls.count("k8s.rollback_deployment") == 1, calls
    assert calls.count("prometheus.check_health") == 1
