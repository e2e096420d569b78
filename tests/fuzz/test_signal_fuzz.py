"""Every signal and the ``decide`` update, fuzzed at a run waiting for approval.

An on-call engineer with the temporal CLI can send any signal with any input:
none, ``null``, a typo'd document, a huge paste, bytes in an encoding no
converter knows. None of it may fail a workflow task (a failing task hangs the
run for good: no escalation, no later approval, its target lock held), and
none of it may decide the run for someone its policy does not list.

Hypothesis sends its batches to one waiting run, in the time-skipping
environment: starting a run per example would cost most of the time budget.
So shrinking is off (every later example shares the run an earlier one may
have broken), and a failure reports the workflow task's own error from the
history. After the fuzzing, the one listed approver approves, and the run must
act and resolve as if nothing had happened.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticSerializationError
from temporalio.api.common.v1 import Payload, Payloads, WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from suture.models import ApprovalAnswer, ApprovalRequest, Outcome
from tests.fuzz.profiles import examples
from tests.fuzz.strategies import STRANGE_TEXT, deep_nesting, documents, huge_strings, json_values
from tests.workflow.fakes import FakeWorld, load_test_policies
from tests.workflow.test_reliability_loop import POLICY, start
from tests.workflow.test_signals_and_authority import wait_for_step
from workflows.reliability import ReliabilityLoop

pytestmark = pytest.mark.asyncio(loop_scope="module")

APPROVER = "oncall-approver"
"""The one name the run's policy lists; the fuzzer never generates it."""
SIGNALS = ("approve", "reject", "evidence", "alert_resolved")
HUGE = (1025, 40_000, 300_000)
"""Payload sizes a sender might paste; Temporal itself refuses a signal over 2 MiB at the door."""
BARRIER_S = 20
"""How long a rejected ``decide`` may take to come back; only a failing workflow task reaches it."""

decision = {"approver": "bob", "note": "looks fine to me"}
another_alert = {
    "fingerprint": "ffffffffffffffff",
    "status": "resolved",
    "labels": {"alertname": "HighLatency", "namespace": "shop", "service": "checkout"},
    "annotations": {"summary": "checkout p99 above 500 ms"},
    "starts_at": datetime(2026, 3, 1, tzinfo=UTC).isoformat(),
    "received_at": datetime(2026, 3, 1, tzinfo=UTC).isoformat(),
}
VALID = {
    "approve": decision,
    "reject": decision,
    "evidence": another_alert,
    "alert_resolved": another_alert,
    "decide": {"answer": "approve", **decision},
}
ENCODINGS = [b"json/plain", b"binary/null", b"binary/plain", b"json/protobuf", b"binary/protobuf", b"x-no"]


class Sent:
    """One hostile message: a signal or update with JSON arguments, or a signal with raw payloads."""

    def __init__(
        self, name: str, args: tuple[Any, ...] = (), raw: tuple[tuple[bytes | None, bytes], ...] | None = None
    ) -> None:
        self.name, self.args, self.raw = name, args, raw

    def __repr__(self) -> str:  # a 300 KB payload would flood a failure report
        shown = repr(self.raw if self.raw is not None else self.args)
        return f"Sent({self.name!r}, {shown[:300]}{'...' if len(shown) > 300 else ''})"


values = st.one_of(json_values, huge_strings(HUGE), deep_nesting(), st.sampled_from(STRANGE_TEXT))


def arguments(name: str) -> st.SearchStrategy[tuple[Any, ...]]:
    one = st.one_of(documents(VALID[name], values), huge_strings(HUGE)).map(lambda doc: (doc,))
    return st.one_of(st.just(()), st.just((None,)), one, st.lists(json_values, max_size=3).map(tuple))


# What other SDKs or a hand-written request may carry: JSON with escapes Python cannot encode
# (lone surrogates), bytes that are not JSON, encodings no converter knows, no encoding at all.
def raw_payloads(name: str) -> st.SearchStrategy[tuple[bytes | None, bytes]]:
    as_json = documents(VALID[name], values).map(lambda document: json.dumps(document).encode())
    return st.one_of(
        st.tuples(st.just(b"json/plain"), as_json),
        st.tuples(st.sampled_from([*ENCODINGS, None]), st.binary(max_size=64)),
    )


@st.composite
def messages(draw: st.DrawFn) -> Sent:
    name = draw(st.sampled_from((*SIGNALS, "decide")))
    if name != "decide" and draw(st.integers(min_value=0, max_value=3)) == 0:
        return Sent(name, raw=tuple(draw(st.lists(raw_payloads(name), max_size=2))))
    return Sent(name, draw(arguments(name)))


async def send(env: WorkflowEnvironment, handle: WorkflowHandle, message: Sent) -> None:
    if message.raw is not None:
        payloads = [
            Payload(metadata={} if encoding is None else {"encoding": encoding}, data=data)
            for encoding, data in message.raw
        ]
        await env.client.workflow_service.signal_workflow_execution(
            SignalWorkflowExecutionRequest(
                namespace=env.client.namespace,
                workflow_execution=WorkflowExecution(workflow_id=handle.id),
                signal_name=message.name,
                input=Payloads(payloads=payloads),
                identity="fuzzer",
                request_id=str(uuid.uuid4()),
            )
        )
        return
    try:
        pydantic_data_converter.payload_converter.to_payloads(list(message.args))
    except PydanticSerializationError:
        return  # the client refuses to encode it (a lone surrogate); raw payloads carry such text
    if message.name == "decide":
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update("decide", args=list(message.args))
    else:
        await handle.signal(message.name, args=list(message.args))


async def still_waiting(handle: WorkflowHandle) -> None:
    """Every message so far has been taken: a refused ``decide`` comes back, the run still waits."""
    refused = ApprovalRequest(answer=ApprovalAnswer.APPROVE, approver="not-listed")
    try:
        await asyncio.wait_for(handle.execute_update("decide", refused), BARRIER_S)
    except WorkflowUpdateFailedError:
        pass
    except TimeoutError:
        raise AssertionError(f"the run stopped answering: {await task_failures(handle)}") from None
    else:
        raise AssertionError("an unlisted name decided the run")
    status = await handle.query(ReliabilityLoop.status)
    assert status.step == "awaiting_approval", status


async def task_failures(handle: WorkflowHandle) -> list[str]:
    history = await handle.fetch_history()
    return [
        event.workflow_task_failed_event_attributes.failure.message
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]


async def test_no_signal_or_update_payload_fails_a_workflow_task_and_the_run_still_resolves(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    policy = POLICY.replace("{mode}", "supervised").replace("approvers: [alice]", f"approvers: [{APPROVER}]")
    world = FakeWorld(policies=load_test_policies(tmp_path, policy))
    handle, worker = await start(env, world)
    loop = asyncio.get_running_loop()

    @settings(
        max_examples=examples(80),
        phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: the run is shared
        database=None,
    )
    @given(batch=st.lists(messages(), min_size=1, max_size=5))
    def fuzz(batch: list[Sent]) -> None:
        async def deliver() -> None:
            for message in batch:
                await send(env, handle, message)
            await still_waiting(handle)

        asyncio.run_coroutine_threadsafe(deliver(), loop).result()

    async with worker:
        await wait_for_step(handle, "awaiting_approval")
        await asyncio.to_thread(fuzz)  # Hypothesis drives from a thread; the worker runs on this loop
        assert await task_failures(handle) == []
        await handle.signal("approve", {"approver": APPROVER, "note": "after the noise"})
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome == Outcome.RESOLVED and result.approver == APPROVER
    assert len(world.called("k8s.rollback_deployment")) == 1
    assert world.called("audit.release_target")[0].acted is True
    assert any(entry.step == "signal_ignored" for entry in world.audit)
