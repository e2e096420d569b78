"""Escalation against a real HTTP receiver on loopback."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pytest_httpserver import HTTPServer
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify import Escalation
from suture.models import ActionRecord, Briefing, Evidence, Loop, Mode

pytestmark = pytest.mark.integration

BRIEFING = Briefing(
    workflow_id="reliability-4f1c2a-1764050400",
    loop=Loop.RELIABILITY,
    title="HighLatency on shop/checkout: suture stopped and needs a human",
    subject="shop/checkout",
    impact="p99 latency 1.8s for checkout",
    scope="shop/checkout",
    reason="verification failed (p99 1.7s >= 0.5s); the action was undone",
    evidence=[
        Evidence(
            source="prometheus", query="latency_p99", value=1.7, at=datetime(2026, 11, 25, 3, 4, tzinfo=UTC)
        )
    ],
    recent_changes=["revision 7 (shop/checkout:2.4.1) rolled out 6m ago"],
    would_have_done=["roll the Deployment back (k8s.rollback on shop/checkout)"],
    actions_taken=[
        ActionRecord(type="k8s.rollback", target="shop/checkout", mode=Mode.AUTONOMOUS, compensated=True)
    ],
)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as opened:
        yield opened


async def escalate(escalation: Escalation) -> None:
    await ActivityEnvironment().run(escalation.escalate, BRIEFING)


async def test_the_briefing_is_posted_as_json_keyed_by_its_workflow_id(
    httpserver: HTTPServer, client: httpx.AsyncClient
) -> None:
    httpserver.expect_oneshot_request(
        "/hooks/suture",
        method="POST",
        headers={"Idempotency-Key": BRIEFING.workflow_id, "Content-Type": "application/json"},
    ).respond_with_data("ok", status=202)
    await escalate(Escalation(httpserver.url_for("/hooks/suture"), client))
    httpserver.check_assertions()
    received, _ = httpserver.log[0]
    assert Briefing.model_validate(json.loads(received.get_data())) == BRIEFING


async def test_a_server_error_is_raised_for_temporal_to_retry(
    httpserver: HTTPServer, client: httpx.AsyncClient
) -> None:
    httpserver.expect_request("/hooks/suture").respond_with_data("upstream down", status=503)
    with pytest.raises(ApplicationError) as raised:
        await escalate(Escalation(httpserver.url_for("/hooks/suture"), client))
    assert not raised.value.non_retryable
    assert "503" in str(raised.value)


async def test_a_refused_briefing_is_not_retried_and_says_why(
    httpserver: HTTPServer, client: httpx.AsyncClient
) -> None:
    httpserver.expect_request("/hooks/suture").respond_with_data("unknown channel", status=404)
    with pytest.raises(ApplicationError) as raised:
        await escalate(Escalation(httpserver.url_for("/hooks/suture"), client))
    assert raised.value.non_retryable
    assert "404" in str(raised.value) and "unknown channel" in str(raised.value)


async def test_rate_limiting_is_retried_after_the_delay_the_receiver_asks_for(
    httpserver: HTTPServer, client: httpx.AsyncClient
) -> None:
    httpserver.expect_request("/hooks/suture").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "7"}
    )
    with pytest.raises(ApplicationError) as raised:
        await escalate(Escalation(httpserver.url_for("/hooks/suture"), client))
    assert not raised.value.non_retryable
    assert raised.value.next_retry_delay == timedelta(seconds=7)


async def test_an_unreachable_receiver_is_raised_for_temporal_to_retry(client: httpx.AsyncClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(ApplicationError) as raised:
        await escalate(Escalation(f"http://127.0.0.1:{closed_port}/hooks/suture", client))
    assert not raised.value.non_retryable
    assert "unreachable" in str(raised.value)


async def test_without_a_webhook_the_briefing_is_logged_and_nothing_is_sent(
    httpserver: HTTPServer, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        await escalate(Escalation(None, client))
    assert BRIEFING.workflow_id in caplog.text
    assert BRIEFING.reason in caplog.text
    assert httpserver.log == []
