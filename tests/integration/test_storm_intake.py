"""A storm's payload goes through the alert intake: a 2xx once it is durable, every run started once.

Real dev server, real ingress application, the real ``AlertIntake`` workflow and
its activity on a worker; the reliability loop is a fake that only records what
reached it, so the test counts runs and signals, not actions.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import suppress
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from suture.intake import DIRECT_ALERTS
from suture.models import AlertNotice, ReliabilityLoopInput
from workers.ingress import create_app
from workers.intake import AlertIntakeActivities
from workflows.intake import AlertIntake

pytestmark = pytest.mark.integration

TOKEN = "storm-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STORM = DIRECT_ALERTS * 3 + 7
"""Alerts in the storm: over the direct limit, so the payload goes through the intake."""


@workflow.defn(name="ReliabilityLoop", sandboxed=False)
class CountingLoop:
    """Keeps its run open and counts the ``evidence`` signals it received."""

    def __init__(self) -> None:
        self.evidence = 0

    @workflow.run
    async def run(self, request: ReliabilityLoopInput) -> int:
        with suppress(TimeoutError):
            await workflow.wait_condition(lambda: False, timeout=timedelta(minutes=2))
        return self.evidence

    @workflow.signal(name="evidence")
    def add_evidence(self, notice: AlertNotice) -> None:
        self.evidence += 1

    @workflow.signal
    def alert_resolved(self, notice: AlertNotice) -> None:
        pass

    @workflow.query
    def received(self) -> int:
        return self.evidence


def storm(tag: str, count: int = STORM) -> dict[str, Any]:
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": "UpstreamDown", "namespace": "shop", "service": f"svc-{index}"},
            "startsAt": "2026-03-01T11:59:58Z",
            "fingerprint": f"{tag}-{index:04d}",
        }
        for index in range(count)
    ]
    return {
        "version": "4",
        "groupKey": '{}:{alertname="UpstreamDown"}',
        "status": "firing",
        "receiver": "suture",
        "alerts": alerts,
    }


@pytest.fixture
async def http(temporal_client: Client, task_queue: str) -> AsyncIterator[httpx.AsyncClient]:
    intake = AlertIntakeActivities(temporal_client)
    async with Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=[CountingLoop, AlertIntake],
        activities=[intake.deliver_alerts],
    ):

        async def provider() -> Client:
            return temporal_client

        app = create_app(provider, TOKEN, task_queue)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingress", timeout=60) as client:
            yield client


async def runs_of(client: Client, tag: str, expected: int) -> tuple[int, int]:
    """(runs, distinct workflow IDs) of the storm, once visibility shows ``expected`` or after a wait."""
    query = f"WorkflowType = 'ReliabilityLoop' AND WorkflowId STARTS_WITH 'reliability-{tag}-'"
    ids: list[str] = []
    for _ in range(300):
        ids = [execution.id async for execution in client.list_workflows(query)]
        if len(ids) >= expected:
            break
        await asyncio.sleep(0.2)
    return len(ids), len(set(ids))


async def test_a_storm_is_accepted_once_durable_and_each_alert_is_queued_for_its_run(
    http: httpx.AsyncClient, temporal_client: Client
) -> None:
    tag = f"s{uuid.uuid4().hex[:8]}"

    response = await http.post("/alerts/alertmanager", json=storm(tag), headers=AUTH)

    assert response.status_code == 202
    deliveries = response.json()["deliveries"]
    assert len(deliveries) == STORM and {d["kind"] for d in deliveries} == {"queued"}
    assert deliveries[0]["workflow_id"].startswith(f"reliability-{tag}-0000-")
    assert await runs_of(temporal_client, tag, STORM) == (STORM, STORM)


async def test_a_storm_sent_twice_starts_every_run_exactly_once_and_the_repeat_joins_it(
    http: httpx.AsyncClient, temporal_client: Client
) -> None:
    tag = f"s{uuid.uuid4().hex[:8]}"

    first, second = await asyncio.gather(
        http.post("/alerts/alertmanager", json=storm(tag), headers=AUTH),
        http.post("/alerts/alertmanager", json=storm(tag), headers=AUTH),
    )

    assert (first.status_code, second.status_code) == (202, 202)
    assert await runs_of(temporal_client, tag, STORM) == (STORM, STORM)
    last = response_id(first.json(), -1)
    for _ in range(100):  # the second delivery of each alert arrives as an evidence signal
        if await temporal_client.get_workflow_handle(last).query(CountingLoop.received) == 2:
            break
        await asyncio.sleep(0.2)
    assert await temporal_client.get_workflow_handle(last).query(CountingLoop.received) == 2


def response_id(body: dict[str, Any], index: int) -> str:
    workflow_id: str = body["deliveries"][index]["workflow_id"]
    return workflow_id


async def test_a_small_payload_is_still_delivered_alert_by_alert(
    http: httpx.AsyncClient, temporal_client: Client
) -> None:
    tag = f"s{uuid.uuid4().hex[:8]}"

    response = await http.post("/alerts/alertmanager", json=storm(tag, count=3), headers=AUTH)

    assert response.status_code == 202
    assert [d["kind"] for d in response.json()["deliveries"]] == ["started"] * 3
