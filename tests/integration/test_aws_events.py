"""AWS events through the ingress and the SQS poller into a real Temporal dev server.

A fake SecurityLoop under the real name records what it was started with, so these
tests hold the delivery contract (one run per event, 2xx or deletion only once
durable) without the loop's activities.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from sandbox.aws import MotoSandbox, envelope
from suture.models import SecurityLoopInput
from workers.aws_events import SqsPoller, aws_router
from workers.ingress import create_app
from workers.temporal_client import TemporalUnavailable

pytestmark = pytest.mark.integration

TOKEN = "events-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


# Unsandboxed: the sandbox would re-import this module and its HTTP clients.
@workflow.defn(name="SecurityLoop", sandboxed=False)
class FakeSecurityLoop:
    def __init__(self) -> None:
        self.request: SecurityLoopInput | None = None

    @workflow.run
    async def run(self, request: SecurityLoopInput) -> None:
        self.request = request
        with suppress(TimeoutError):
            await workflow.wait_condition(lambda: False, timeout=timedelta(seconds=30))

    @workflow.query
    def input(self) -> SecurityLoopInput | None:
        return self.request


def ssh_opened(event_id: str | None = None) -> dict[str, Any]:
    permission = {
        "ipProtocol": "tcp",
        "fromPort": 22,
        "toPort": 22,
        "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]},
    }
    record = {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "IAMUser",
            "arn": "arn:aws:iam::123456789012:user/ci-deployer",
            "accountId": "123456789012",
            "accessKeyId": "AKIAEXAMPLEKEY00001",
            "userName": "ci-deployer",
        },
        "eventTime": "2026-11-25T03:00:00Z",
        "eventSource": "ec2.amazonaws.com",
        "eventName": "AuthorizeSecurityGroupIngress",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.66",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": {"groupId": "sg-0web", "ipPermissions": {"items": [permission]}},
        "responseElements": {"_return": True},
        "eventID": str(uuid.uuid4()),
        "recipientAccountId": "123456789012",
        "newFieldAwsAddsLater": {"ignored": True},
    }
    body = envelope(record)
    body["id"] = event_id or str(uuid.uuid4())
    return body


@pytest.fixture
async def fake_loop(temporal_client: Client, task_queue: str) -> AsyncIterator[Client]:
    async with Worker(temporal_client, task_queue=task_queue, workflows=[FakeSecurityLoop]):
        yield temporal_client


@pytest.fixture
async def http(fake_loop: Client, task_queue: str) -> AsyncIterator[httpx.AsyncClient]:
    async def provider() -> Client:
        return fake_loop

    app = create_app(provider, TOKEN, task_queue, routers=[aws_router()])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress") as client:
        yield client


async def started_with(client: Client, workflow_id: str) -> SecurityLoopInput:
    handle = client.get_workflow_handle(workflow_id)
    for _ in range(100):
        found = await handle.query(FakeSecurityLoop.input)
        if found is not None:
            return SecurityLoopInput.model_validate(found)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{workflow_id} never received its input")


# --- POST /events/aws ------------------------------------------------------------------------------


async def test_an_event_starts_one_security_run_named_after_its_account_and_id(
    http: httpx.AsyncClient, fake_loop: Client
) -> None:
    body = ssh_opened()

    response = await http.post("/events/aws", json=body, headers=AUTH)

    assert response.status_code == 202
    delivery = response.json()["delivery"]
    assert delivery["kind"] == "started"
    assert delivery["workflow_id"] == f"security-123456789012-{body['id']}"
    event = (await started_with(fake_loop, delivery["workflow_id"])).event
    assert (event.event_name, event.principal.access_key_id, event.source_ip) == (
        "AuthorizeSecurityGroupIngress",
        "AKIAEXAMPLEKEY00001",
        "203.0.113.66",
    )
    assert event.request_parameters["groupId"] == "sg-0web"


async def test_the_same_event_delivered_twice_starts_one_run(http: httpx.AsyncClient) -> None:
    body = ssh_opened()

    first = await http.post("/events/aws", json=body, headers=AUTH)
    second = await http.post("/events/aws", json=body, headers=AUTH)

    assert first.json()["delivery"]["kind"] == "started"
    assert second.status_code == 202
    assert second.json()["delivery"] == {**first.json()["delivery"], "kind": "duplicate"}


async def test_an_event_re_sent_with_a_changed_group_finds_its_first_run(http: httpx.AsyncClient) -> None:
    body = ssh_opened()
    first = await http.post("/events/aws", json=body, headers=AUTH)
    for group in ("sg-0other", "sg-0third"):
        changed = {**body, "detail": {**body["detail"], "requestParameters": {"groupId": group}}}
        again = await http.post("/events/aws", json=changed, headers=AUTH)
        assert again.json()["delivery"] == {**first.json()["delivery"], "kind": "duplicate"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"account": "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660\u0661\u0662"}, "account"),
        ({"detail": {"requestParameters": {"groupId": "sg-" + "a" * 10_000}}}, "the resource"),
        ({"detail": {"requestParameters": {"blob": "x" * 3_000_000}}}, "131072"),
    ],
)
async def test_hostile_envelopes_get_422_naming_the_problem(
    http: httpx.AsyncClient, change: dict[str, object], field: str
) -> None:
    body = ssh_opened()
    for key, value in change.items():
        body[key] = {**body[key], **value} if isinstance(value, dict) else value
    response = await http.post("/events/aws", json=body, headers=AUTH)
    assert response.status_code == 422
    assert field in json.dumps(response.json()["detail"])


async def test_a_malformed_envelope_is_rejected_with_the_reason(http: httpx.AsyncClient) -> None:
    no_detail = {key: value for key, value in ssh_opened().items() if key != "detail"}
    not_cloudtrail = {**ssh_opened(), "detail-type": "EC2 Instance State-change Notification"}

    missing = await http.post("/events/aws", json=no_detail, headers=AUTH)
    wrong = await http.post("/events/aws", json=not_cloudtrail, headers=AUTH)

    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["detail"]
    assert wrong.status_code == 422
    assert "not a CloudTrail event" in wrong.json()["detail"][0]["msg"]


async def test_an_event_without_the_token_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.post("/events/aws", json=ssh_opened())

    assert response.status_code == 401


async def test_an_event_gets_503_while_temporal_is_unreachable(task_queue: str) -> None:
    async def unreachable() -> Client:
        raise TemporalUnavailable("cannot reach Temporal at 127.0.0.1:1")

    app = create_app(unreachable, TOKEN, task_queue, routers=[aws_router()])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress") as client:
        response = await client.post("/events/aws", json=ssh_opened(), headers=AUTH)

    assert response.status_code == 503
    assert "retry" in response.json()["detail"]


# --- the SQS poller -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoSandbox]:
    with MotoSandbox() as sandbox:
        yield sandbox


def queue(moto: MotoSandbox) -> tuple[Any, str]:
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName=f"events-{uuid.uuid4().hex[:8]}", Attributes={"VisibilityTimeout": "1"})[
        "QueueUrl"
    ]
    return sqs, url


def left_in(sqs: Any, url: str) -> list[str]:
    time.sleep(1.2)  # past the visibility timeout of what the poller received but kept
    return [m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])]


async def test_sqs_messages_are_deleted_once_their_runs_started_and_junk_is_left_for_the_dead_letter_queue(
    moto: MotoSandbox, fake_loop: Client, task_queue: str
) -> None:
    sqs, url = queue(moto)
    event = ssh_opened()
    sns_wrapped = json.dumps({"Type": "Notification", "Message": json.dumps(ssh_opened())})
    for body in (json.dumps(event), json.dumps(event), sns_wrapped, "not json"):
        sqs.send_message(QueueUrl=url, MessageBody=body)

    async def provider() -> Client:
        return fake_loop

    report = await SqsPoller(provider, url, task_queue, sqs=sqs, wait_s=0).poll_once()

    assert (report.received, report.started, report.duplicates, report.malformed) == (4, 2, 1, 1)
    assert left_in(sqs, url) == ["not json"]


async def test_sqs_messages_stay_when_temporal_is_unreachable(moto: MotoSandbox, task_queue: str) -> None:
    sqs, url = queue(moto)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(ssh_opened()))

    async def unreachable() -> Client:
        raise TemporalUnavailable("cannot reach Temporal at 127.0.0.1:1")

    with pytest.raises(TemporalUnavailable):
        await SqsPoller(unreachable, url, task_queue, sqs=sqs, wait_s=0).poll_once()

    assert len(left_in(sqs, url)) == 1
