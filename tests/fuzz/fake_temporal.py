"""A fake Temporal client for the ingress fuzzer: records every call, holds Temporal's limits.

Thousands of fuzzed requests against a real server would take minutes; the
ingress needs only ``start_workflow`` (with or without a start signal) and
``get_workflow_handle(...).signal``. The fake serializes every argument with
suture's real data converter, as the SDK does before a call leaves the process,
and refuses what a default Temporal server refuses (workflow ID over 1,000
bytes, a search-attribute value over 2 KiB, a request's payloads over 2 MiB)
with the server's ``INVALID_ARGUMENT``. A fuzz case that makes the ingress
answer 4xx after such a call has found a limit the door does not check.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from temporalio.common import TypedSearchAttributes
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import encode_typed_search_attribute_value
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from workers.temporal_client import TemporalUnavailable

MAX_WORKFLOW_ID_BYTES = 1000
MAX_SEARCH_ATTRIBUTE_VALUE_BYTES = 2 * 1024
MAX_REQUEST_PAYLOAD_BYTES = 2 * 1024 * 1024


class TemporalHealth(StrEnum):
    """How the fake behaves for one request."""

    HEALTHY = "healthy"
    UNREACHABLE = "unreachable"
    """The client provider cannot connect (``TemporalUnavailable``)."""
    FAILING = "failing"
    """Calls reach the server and fail with ``UNAVAILABLE``."""
    STALLED = "stalled"
    """Calls hang until the test releases them (the ingress's delivery timeout must answer)."""


@dataclass
class Call:
    kind: str
    workflow_id: str
    detail: str = ""


@dataclass
class _StartResponse:
    started: bool


@dataclass
class FakeHandle:
    client: FakeTemporal
    id: str
    _start_workflow_response: _StartResponse | None = None

    async def signal(self, name: str, arg: Any) -> None:
        await self.client.arrive(Call("signal", self.id, name), [arg], [])
        if self.id not in self.client.open_runs:
            raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")


@dataclass
class FakeTemporal:
    """Answers like a server in the given health; ``calls`` is what reached it."""

    health: TemporalHealth = TemporalHealth.HEALTHY
    calls: list[Call] = field(default_factory=list)
    open_runs: set[str] = field(default_factory=set)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def provider(self) -> Any:
        """The ingress's client provider."""
        if self.health == TemporalHealth.UNREACHABLE:
            raise TemporalUnavailable("cannot reach Temporal at fake:7233: connection refused")
        return self

    async def arrive(self, call: Call, payload_args: list[Any], search_sizes: list[int]) -> None:
        """Serialize as the SDK does, then fail, stall or check limits as a server would."""
        payloads = pydantic_data_converter.payload_converter.to_payloads(payload_args)
        self.calls.append(call)
        if self.health == TemporalHealth.FAILING:
            raise RPCError("connection reset", RPCStatusCode.UNAVAILABLE, b"")
        if self.health == TemporalHealth.STALLED:
            await self.released.wait()
            raise RPCError("deadline exceeded", RPCStatusCode.DEADLINE_EXCEEDED, b"")
        refusals = _over_limits(call.workflow_id, sum(p.ByteSize() for p in payloads), search_sizes)
        if refusals:
            raise RPCError("; ".join(refusals), RPCStatusCode.INVALID_ARGUMENT, b"")

    async def start_workflow(
        self,
        workflow: str,
        arg: Any,
        *,
        id: str,
        task_queue: str,
        start_signal: str | None = None,
        start_signal_args: list[Any] | None = None,
        search_attributes: TypedSearchAttributes | None = None,
        **_: Any,
    ) -> FakeHandle:
        sizes = [
            len(encode_typed_search_attribute_value(pair.key, pair.value).data)
            for pair in (search_attributes or TypedSearchAttributes.empty)
        ]
        kind = "signal_with_start" if start_signal else "start"
        await self.arrive(Call(kind, id, workflow), [arg, *(start_signal_args or [])], sizes)
        started = id not in self.open_runs
        if not started and start_signal is None:
            raise WorkflowAlreadyStartedError(id, workflow)
        self.open_runs.add(id)
        return FakeHandle(self, id, _StartResponse(started=started))

    def get_workflow_handle(self, workflow_id: str) -> FakeHandle:
        return FakeHandle(self, workflow_id)


def _over_limits(workflow_id: str, payload_bytes: int, search_sizes: list[int]) -> list[str]:
    refusals = []
    if len(workflow_id.encode()) > MAX_WORKFLOW_ID_BYTES:
        refusals.append(f"workflow ID exceeds {MAX_WORKFLOW_ID_BYTES} bytes")
    if payload_bytes > MAX_REQUEST_PAYLOAD_BYTES:
        refusals.append(f"payloads of {payload_bytes} bytes exceed {MAX_REQUEST_PAYLOAD_BYTES}")
    for size in search_sizes:
        if size > MAX_SEARCH_ATTRIBUTE_VALUE_BYTES:
            refusals.append(f"a search attribute value exceeds {MAX_SEARCH_ATTRIBUTE_VALUE_BYTES} bytes")
    return refusals
