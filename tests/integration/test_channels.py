"""Each channel against a real HTTP receiver on loopback, payloads checked against the published formats.

Slack: an incoming webhook takes ``{"text", "blocks"}`` where blocks are Block
Kit objects (``header``, ``section`` with a ``mrkdwn`` text object, ``context``
with ``mrkdwn`` elements). PagerDuty Events API v2: ``routing_key``,
``event_action`` (``trigger`` | ``resolve``), ``dedup_key`` and, for a trigger,
``payload.summary`` (≤ 1024 characters), ``payload.source`` and
``payload.severity`` (``critical`` | ``error`` | ``warning`` | ``info``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from pytest_httpserver import HTTPServer
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.channels import ChannelSender
from policies.schema import Notify
from suture.models import (
    ActionRecord,
    Briefing,
    Channel,
    ChannelDelivery,
    ChannelEvent,
    ChannelKind,
    ChannelRoute,
    Commands,
    Confidence,
    Evidence,
    Loop,
    Mode,
)

pytestmark = pytest.mark.integration

RUN = "reliability-4f1c2a-1764050400"
BRIEFING = Briefing(
    workflow_id=RUN,
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
    service="shop/checkout",
    severity="critical",
    labels={"team": "payments"},
    automation="suture did: k8s.rollback on shop/checkout (undone)",
    confidence=Confidence(value=0.55, required=0.7, lowered_by=["no known signature matches"]),
    next_steps=["look at the most recent change first"],
    commands=Commands(
        approve=f"suture approve {RUN} --as oncall-alice",
        reject=f"suture reject {RUN} --as oncall-alice",
        undo=f"suture undo {RUN} --as oncall-alice",
        status=f"temporal workflow query --workflow-id {RUN} --name status",
    ),
)


@pytest.fixture
async def sender() -> AsyncIterator[ChannelSender]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield ChannelSender(client, environ={"PD_KEY": "R0UTINGKEY", "SLACK_URL": ""})


async def send(sender: ChannelSender, channel: Channel, event: ChannelEvent = ChannelEvent.TRIGGER) -> None:
    await ActivityEnvironment().run(
        sender.send, ChannelDelivery(channel=channel, briefing=BRIEFING, event=event)
    )


def received(httpserver: HTTPServer) -> list[dict]:
    return [json.loads(request.data) for request, _ in httpserver.log]


async def test_slack_gets_a_block_kit_message_with_the_briefing_and_the_commands(
    httpserver: HTTPServer, sender: ChannelSender
) -> None:
    httpserver.expect_request("/services/T0/B0/x", method="POST").respond_with_data("ok")
    await send(
        sender, Channel(name="slack", kind=ChannelKind.SLACK, url=httpserver.url_for("/services/T0/B0/x"))
    )
    [message] = received(httpserver)
    assert message["text"] == BRIEFING.title
    blocks = message["blocks"]
    assert {block["type"] for block in blocks} <= {"header", "section", "context"}
    sections = [block for block in blocks if block["type"] == "section"]
    assert all(block["text"]["type"] == "mrkdwn" and len(block["text"]["text"]) <= 3000 for block in sections)
    text = "\n".join(block["text"]["text"] for block in sections)
    for expected in (
        BRIEFING.impact,
        BRIEFING.reason,
        BRIEFING.automation,
        "no known signature matches",
        "latency_p99",
        BRIEFING.recent_changes[0],
        f"`suture approve {RUN} --as oncall-alice`",
        f"`suture undo {RUN} --as oncall-alice`",
    ):
        assert expected in text
    [context] = [block for block in blocks if block["type"] == "context"]
    assert context["elements"][0]["type"] == "mrkdwn" and RUN in context["elements"][0]["text"]


async def test_pagerduty_gets_a_v2_trigger_keyed_by_the_run_then_a_resolve(
    httpserver: HTTPServer, sender: ChannelSender
) -> None:
    httpserver.expect_request("/v2/enqueue", method="POST").respond_with_json(
        {"status": "success"}, status=202
    )
    channel = Channel(
        name="pager",
        kind=ChannelKind.PAGERDUTY,
        url=httpserver.url_for("/v2/enqueue"),
        routing_key_env="PD_KEY",
    )
    await send(sender, channel)
    await send(sender, channel, ChannelEvent.RESOLVE)
    trigger, resolve = received(httpserver)
    assert trigger["routing_key"] == "R0UTINGKEY" and trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == RUN
    payload = trigger["payload"]
    assert payload["severity"] == "critical" and payload["source"] == "shop/checkout"
    assert payload["summary"].startswith(BRIEFING.title) and len(payload["summary"]) <= 1024
    assert payload["custom_details"]["commands"]["undo"] == BRIEFING.commands.undo  # type: ignore[union-attr]
    assert resolve == {"routing_key": "R0UTINGKEY", "event_action": "resolve", "dedup_key": RUN}


async def test_the_generic_webhook_gets_the_briefing_as_json(
    httpserver: HTTPServer, sender: ChannelSender
) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("", status=204)
    await send(sender, Channel(name="hook", kind=ChannelKind.WEBHOOK, url=httpserver.url_for("/hook")))
    [body] = received(httpserver)
    assert body["event"] == "trigger" and body["workflow_id"] == RUN
    assert Briefing.model_validate({k: v for k, v in body.items() if k != "event"}) == BRIEFING


async def test_a_receiver_that_refuses_fails_the_send_without_retry(
    httpserver: HTTPServer, sender: ChannelSender
) -> None:
    httpserver.expect_request("/hook").respond_with_data("invalid_token", status=403)
    with pytest.raises(ApplicationError) as raised:
        await send(sender, Channel(name="slack", kind=ChannelKind.SLACK, url=httpserver.url_for("/hook")))
    assert raised.value.non_retryable and "403" in str(raised.value) and "invalid_token" in str(raised.value)


async def test_a_receiver_that_is_down_fails_the_send_for_a_retry(
    httpserver: HTTPServer, sender: ChannelSender
) -> None:
    httpserver.expect_request("/hook").respond_with_data("busy", status=503)
    with pytest.raises(ApplicationError) as raised:
        await send(sender, Channel(name="hook", kind=ChannelKind.WEBHOOK, url=httpserver.url_for("/hook")))
    assert not raised.value.non_retryable


async def test_a_channel_without_its_secret_names_the_variable_to_set(sender: ChannelSender) -> None:
    with pytest.raises(ApplicationError) as raised:
        await send(sender, Channel(name="slack", kind=ChannelKind.SLACK, url_env="SLACK_URL"))
    assert raised.value.non_retryable and "SLACK_URL" in str(raised.value)


def test_routes_pick_channels_by_the_alerts_team_or_owner_label() -> None:
    channels = [
        Channel(name="slack", kind=ChannelKind.SLACK, url="http://a"),
        Channel(name="pager", kind=ChannelKind.PAGERDUTY, routing_key="k"),
    ]
    routes = [
        ChannelRoute(labels={"team": "payments"}, channels=["pager", "slack"]),
        ChannelRoute(labels={"owner": "alice"}, channels=["slack"]),
    ]
    notify = Notify(channels=channels, routes=routes)
    assert [c.name for c in notify.route({"team": "payments"})] == ["pager", "slack"]
    assert [c.name for c in notify.route({"owner": "alice"})] == ["slack"]
    assert [c.name for c in notify.route({"team": "search"})] == ["slack", "pager"]
