"""A person answers a supervised run from the command line, as the README shows."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

from sandbox.model import ServiceSpec
from sandbox.reliability_drills import GOOD, NAMESPACE, image
from sandbox.stack import Stack
from suture import search_attributes as sa
from suture.models import LoopResult, Outcome
from workflows.undo import undo_workflow_id

pytestmark = [pytest.mark.drill, pytest.mark.asyncio(loop_scope="session")]


async def suture(stack: Stack, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "TEMPORAL_ADDRESS": stack.temporal_address}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_pending_lists_the_run_and_only_a_listed_approver_gets_it_done(stack: Stack) -> None:
    service = "search-cli"
    v1 = image(service, "v1")
    await stack.add_service(ServiceSpec(NAMESPACE, service, {v1: GOOD}, [v1], replicas=2, load_rps=100.0))
    handle = await stack.run_for("SandboxSaturation", NAMESPACE, service)
    for _ in range(100):
        code, out, _ = await suture(stack, "pending", "--json")
        listed = {run["workflow_id"]: run for run in json.loads(out)}
        if handle.id in listed:
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError(f"suture pending never listed {handle.id}")
    waiting = listed[handle.id]
    assert waiting["policy"] == "sandbox-saturation"
    assert waiting["proposed_actions"] == [f"k8s.scale on {NAMESPACE}/{service}"]
    assert waiting["approvers"] == ["oncall-alice", "oncall-bob"] and waiting["deadline"]

    code, _, err = await suture(stack, "approve", handle.id, "--as", "mallory")
    assert code == 2 and "'mallory' is not an approver" in err

    code, out, _ = await suture(stack, "approve", handle.id, "--as", "oncall-bob", "--note", "go ahead")
    assert code == 0 and f"{handle.id} approved by oncall-bob" in out
    result = await asyncio.wait_for(
        stack.client.get_workflow_handle(handle.id, result_type=LoopResult).result(), 120
    )
    assert result.outcome == Outcome.RESOLVED and result.approver == "oncall-bob"

    description = await stack.client.get_workflow_handle(handle.id).describe()
    assert (await description.memo_value("outcome")) == "resolved"

    code, out, err = await suture(stack, "undo", handle.id, "--as", "oncall-alice", "--note", "by hand")
    assert code == 0, err
    undo = await stack.client.get_workflow_handle(undo_workflow_id(handle.id)).describe()
    assert undo.typed_search_attributes.get(sa.SUTURE_LOOP) == "reliability"
    assert undo.typed_search_attributes.get(sa.SUTURE_SERVICE) == description.typed_search_attributes.get(
        sa.SUTURE_SERVICE
    )
