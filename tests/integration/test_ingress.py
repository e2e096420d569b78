"""The ingress against a real Temporal dev server and a fake ReliabilityLoop.

The fake is registered under the real workflow name on a task queue of the test's
own, so these tests exercise the ingress's contract with Temporal (one run per
alert episode, signals in order, 2xx only once durable) without the real loop's
activities.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from temporalio import workflow
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RetryConfig, RPCError, RPCStatusCode
from temporalio.worker import Worker

from suture import search_attributes as sa
from suture.errors import ConfigError
from suture.models import AlertNotice, ReliabilityLoopInput
from workers.devserver import DevServer, free_port
from workers.ingress import create_app, serve
from workers.temporal_client import LazyClient, connect

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


class Seen(BaseModel):
    signal: str
    notice: AlertNotice


# Unsandboxed: the sandbox would re-import this test module, httpx and uvicorn included.
@workflow.defn(name="ReliabilityLoop", sandboxed=False)
class FakeReliabilityLoop:
    """Records its input and every signal; ends on ``stop`` or after a minute."""

    def __init__(self) -> None:
        self.request: ReliabilityLoopInput | None = None
        self.seen: list[Seen] = []
        self.stopped = False

    @workflow.run
    async def run(self, request: ReliabilityLoopInput) -> int:
        self.request = request
        with suppress(TimeoutError):
            await workflow.wait_condition(lambda: self.stopped, timeout=timedelta(minutes=1))
        return len(self.seen)

    @workflow.signal(name="evidence")
    def evidence(self, notice: AlertNotice) -> None:
        self.seen.append(Seen(signal="evidence", notice=notice))

    @workflow.signal
    def alert_resolved(self, notice: AlertNotice) -> None:
        self.seen.append(Seen(signal="alert_resolved", notice=notice))

    @workflow.signal
    def stop(self) -> None:
        self.stopped = True

    @workflow.query
    def signals(self) -> list[Seen]:
        return self.seen

    @workflow.query
    def input(self) -> ReliabilityLoopInput | None:
        return self.request


def alert(
    fingerprint: str = "6f3b0c1e2d4a5b69", status: str = "firing", starts_at: str = "2026-03-01T11:59:58Z"
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "CheckoutLatencyHigh", "namespace": "shop", "service": "checkout"},
        "annotations": {"summary": "p99 latency above 500ms"},
        "startsAt": starts_at,
        "endsAt": "2026-03-01T12:10:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fingerprint,
    }


def notification(*alerts: dict[str, Any], version: str = "4") -> dict[str, Any]:
    return {
        "version": version,
        "groupKey": '{}:{alertname="CheckoutLatencyHigh"}',
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": "suture",
        "groupLabels": {"alertname": "CheckoutLatencyHigh"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
        "truncatedAlerts": 0,
    }


def unique_fingerprint() -> str:
    # The session's server outlives a test; each test's episodes get IDs of their own.
    return uuid.uuid4().hex[:16]


@asynccontextmanager
async def ingress(
    provider: Callable[[], Awaitable[Client]],
    task_queue: str = "unused",
    token: str | None = TOKEN,
    **options: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(provider, token, task_queue, **options)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as http:
        yield http


async def never_called() -> Client:
    raise AssertionError("the request reached Temporal")


async def post(http: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await http.post("/alerts/alertmanager", json=body, headers=AUTH)


@pytest.fixture
async def fake_loop(temporal_client: Client, task_queue: str) -> AsyncIterator[Client]:
    async with Worker(temporal_client, task_queue=task_queue, workflows=[FakeReliabilityLoop]):
        yield temporal_client


@pytest.fixture
async def http(fake_loop: Client, task_queue: str) -> AsyncIterator[httpx.AsyncClient]:
    async def provider() -> Client:
        return fake_loop

    async with ingress(provider, task_queue) as client:
        yield client


async def runs_of(client: Client, workflow_id: str) -> int:
    # Visibility is eventually consistent; give it a moment to catch up.
    for _ in range(50):
        count = (await client.count_workflows(f"WorkflowId = '{workflow_id}'")).count
        if count:
            return count
        await asyncio.sleep(0.1)
    return 0


async def signals_of(client: Client, workflow_id: str) -> list[Seen]:
    return await client.get_workflow_handle(workflow_id).query(FakeReliabilityLoop.signals)


# --- authentication and validation: nothing reaches Temporal -------------------------


async def test_a_webhook_without_a_token_is_refused_with_a_bearer_challenge() -> None:
    async with ingress(never_called) as http:
        response = await http.post("/alerts/alertmanager", json=notification(alert()))

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_webhook_with_a_wrong_token_is_refused() -> None:
    async with ingress(never_called) as http:
        response = await http.post(
            "/alerts/alertmanager", json=notification(alert()), headers={"Authorization": "Bearer nope"}
        )

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


async def test_a_token_with_another_scheme_is_refused() -> None:
    async with ingress(never_called) as http:
        response = await http.post(
            "/alerts/alertmanager", json=notification(alert()), headers={"Authorization": f"Basic {TOKEN}"}
        )

    assert response.status_code == 401


async def test_malformed_json_is_rejected_with_a_reason() -> None:
    async with ingress(never_called) as http:
        response = await http.post(
            "/alerts/alertmanager", content=b'{"version": "4", "alerts": [', headers=AUTH
        )

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


async def test_an_alert_without_fingerprint_is_rejected_with_where_it_is_missing() -> None:
    body = notification(alert())
    del body["alerts"][0]["fingerprint"]
    async with ingress(never_called) as http:
        response = await post(http, body)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["alerts", 0, "fingerprint"]


async def test_a_version_3_payload_is_rejected() -> None:
    async with ingress(never_called) as http:
        response = await post(http, notification(alert(), version="3"))

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["version"]


def test_the_ingress_refuses_to_start_without_a_token() -> None:
    with pytest.raises(ConfigError, match="SUTURE_WEBHOOK_TOKEN"):
        create_app(never_called, None, "suture")


async def test_an_explicitly_insecure_ingress_checks_the_body_without_asking_for_a_token() -> None:
    async with ingress(never_called, token=None, insecure=True) as http:
        response = await http.post("/alerts/alertmanager", json=notification(alert(), version="3"))

    assert response.status_code == 422


# --- delivery to a real Temporal ------------------------------------------------------


@pytest.mark.integration
async def test_a_firing_alert_starts_one_run_indexed_for_the_ui(
    http: httpx.AsyncClient, fake_loop: Client
) -> None:
    before = datetime.now(UTC)
    response = await post(http, notification(alert(unique_fingerprint())))

    assert response.status_code == 202
    [delivery] = response.json()["deliveries"]
    assert delivery["kind"] == "started"
    handle = fake_loop.get_workflow_handle(delivery["workflow_id"])
    description = await handle.describe()
    assert description.workflow_type == "ReliabilityLoop"
    assert description.typed_search_attributes.get(sa.SUTURE_LOOP) == "reliability"
    assert description.typed_search_attributes.get(sa.SUTURE_SERVICE) == "shop/checkout"
    request = await handle.query(FakeReliabilityLoop.input)
    assert request is not None
    assert before <= request.alert.received_at <= datetime.now(UTC)
    assert await runs_of(fake_loop, delivery["workflow_id"]) == 1


@pytest.mark.integration
async def test_the_same_alert_again_joins_its_run_as_evidence(
    http: httpx.AsyncClient, fake_loop: Client
) -> None:
    firing = alert(unique_fingerprint())

    first = await post(http, notification(firing))
    again = await post(http, notification(firing))
    twice_in_one = await post(http, notification(firing, firing))

    kinds = [[d["kind"] for d in r.json()["deliveries"]] for r in (first, again, twice_in_one)]
    assert kinds == [["started"], ["joined"], ["joined", "joined"]]
    workflow_id = first.json()["deliveries"][0]["workflow_id"]
    assert {d["workflow_id"] for r in (again, twice_in_one) for d in r.json()["deliveries"]} == {workflow_id}
    assert await runs_of(fake_loop, workflow_id) == 1
    # Signal-with-start delivers the first notification as evidence too: four in all.
    seen = await signals_of(fake_loop, workflow_id)
    assert [s.signal for s in seen] == ["evidence"] * 4
    assert all(s.notice.fingerprint == firing["fingerprint"] for s in seen)


@pytest.mark.integration
async def test_an_episode_whose_run_has_closed_is_not_started_again(
    http: httpx.AsyncClient, fake_loop: Client
) -> None:
    firing = alert(unique_fingerprint())
    workflow_id = (await post(http, notification(firing))).json()["deliveries"][0]["workflow_id"]
    handle = fake_loop.get_workflow_handle(workflow_id)
    await handle.signal(FakeReliabilityLoop.stop)
    await handle.result()

    response = await post(http, notification(firing))

    assert response.status_code == 202
    assert response.json()["deliveries"][0]["kind"] == "duplicate"
    assert await runs_of(fake_loop, workflow_id) == 1
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


@pytest.mark.integration
async def test_a_new_episode_of_the_same_alert_starts_a_new_run(http: httpx.AsyncClient) -> None:
    fingerprint = unique_fingerprint()
    first = await post(http, notification(alert(fingerprint)))
    later = await post(http, notification(alert(fingerprint, starts_at="2026-03-02T08:00:00Z")))

    assert [r.json()["deliveries"][0]["kind"] for r in (first, later)] == ["started", "started"]
    assert first.json()["deliveries"][0]["workflow_id"] != later.json()["deliveries"][0]["workflow_id"]


@pytest.mark.integration
async def test_a_resolved_notification_reaches_the_running_workflow_as_alert_resolved(
    http: httpx.AsyncClient, fake_loop: Client
) -> None:
    fingerprint = unique_fingerprint()
    await post(http, notification(alert(fingerprint)))

    response = await post(http, notification(alert(fingerprint, status="resolved")))

    assert response.status_code == 202
    [delivery] = response.json()["deliveries"]
    assert delivery["kind"] == "resolved"
    seen = await signals_of(fake_loop, delivery["workflow_id"])
    assert [s.signal for s in seen] == ["evidence", "alert_resolved"]
    assert seen[-1].notice.status == "resolved"
    assert seen[-1].notice.ends_at == datetime(2026, 3, 1, 12, 10, tzinfo=UTC)


@pytest.mark.integration
async def test_a_resolved_alert_without_an_open_run_is_ignored(
    http: httpx.AsyncClient, fake_loop: Client
) -> None:
    response = await post(http, notification(alert(unique_fingerprint(), status="resolved")))

    assert response.status_code == 202
    [delivery] = response.json()["deliveries"]
    assert delivery["kind"] == "ignored"
    with pytest.raises(RPCError) as missing:
        await fake_loop.get_workflow_handle(delivery["workflow_id"]).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND


@pytest.mark.integration
async def test_every_alert_of_a_group_gets_its_own_run(http: httpx.AsyncClient, fake_loop: Client) -> None:
    fingerprints = [unique_fingerprint() for _ in range(5)]

    response = await post(http, notification(*(alert(f) for f in fingerprints)))

    deliveries = response.json()["deliveries"]
    assert [d["fingerprint"] for d in deliveries] == fingerprints
    assert {d["kind"] for d in deliveries} == {"started"}
    assert len({d["workflow_id"] for d in deliveries}) == 5


# --- Temporal unreachable: 503, so Alertmanager retries ------------------------------


async def test_a_webhook_gets_503_when_temporal_cannot_be_reached() -> None:
    provider = LazyClient(lambda: connect(f"127.0.0.1:{free_port()}"))
    async with ingress(provider) as http:
        response = await post(http, notification(alert()))

    assert response.status_code == 503
    assert "cannot reach Temporal" in response.json()["detail"]
    assert response.json()["delivered"] == []
    assert len(response.json()["undelivered"]) == 1


async def test_a_webhook_gets_503_listing_undelivered_alerts_when_the_connection_is_lost() -> None:
    short_retries = RetryConfig(max_retries=1, max_elapsed_time_millis=300)
    client = await connect(f"127.0.0.1:{free_port()}", lazy=True, retry_config=short_retries)

    async def provider() -> Client:
        return client

    async with ingress(provider) as http:
        response = await post(http, notification(alert("aaaa000000000001"), alert("aaaa000000000002")))

    assert response.status_code == 503
    body = response.json()
    assert body["delivered"] == []
    assert len(body["undelivered"]) == 2
    assert "retry" in body["detail"]


@pytest.mark.integration
async def test_a_webhook_gets_503_when_the_temporal_server_goes_away(tmp_path) -> None:
    with DevServer(tmp_path, headless=True) as server:
        client = await connect(
            server.address, retry_config=RetryConfig(max_retries=2, max_elapsed_time_millis=1000)
        )

    async def provider() -> Client:
        return client

    async with ingress(provider) as http:
        response = await post(http, notification(alert(unique_fingerprint())))

    assert response.status_code == 503
    assert response.json()["delivered"] == []


async def test_alerts_delivered_before_temporal_failed_are_listed_in_the_503() -> None:
    client = FlakyTemporal(fail_for="bbbb000000000002")

    async def provider() -> Client:
        return client  # type: ignore[return-value]

    async with ingress(provider) as http:
        response = await post(http, notification(alert("bbbb000000000001"), alert("bbbb000000000002")))

    assert response.status_code == 503
    body = response.json()
    assert [d["fingerprint"] for d in body["delivered"]] == ["bbbb000000000001"]
    assert body["undelivered"] == ["reliability-bbbb000000000002-1772366398"]


async def test_a_webhook_gets_503_when_temporal_does_not_answer_in_time() -> None:
    client = FlakyTemporal(fail_for="cccc000000000002", hang=True)

    async def provider() -> Client:
        return client  # type: ignore[return-value]

    async with ingress(provider, delivery_timeout=0.2) as http:
        response = await post(http, notification(alert("cccc000000000001"), alert("cccc000000000002")))

    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    body = response.json()
    assert "did not answer in time" in body["detail"] and "within 0.2s" in body["detail"]
    assert [d["fingerprint"] for d in body["delivered"]] == ["cccc000000000001"]
    assert body["in_flight"] == ["reliability-cccc000000000002-1772366398"], "it may have started"
    assert body["undelivered"] == []


class FlakyTemporal:
    """Starts every workflow except one fingerprint's, for which Temporal fails or never answers."""

    def __init__(self, fail_for: str, hang: bool = False) -> None:
        self.fail_for = fail_for
        self.hang = hang

    async def start_workflow(self, workflow: str, request: ReliabilityLoopInput, **options: Any) -> Any:
        if request.alert.fingerprint == self.fail_for:
            if self.hang:
                await asyncio.Event().wait()
            raise RPCError("connection lost", RPCStatusCode.UNAVAILABLE, b"")
        return object()


# --- operations -----------------------------------------------------------------------


@pytest.mark.integration
async def test_healthz_is_ok_while_temporal_answers(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "temporal": "reachable"}


async def test_healthz_is_503_while_temporal_does_not_answer() -> None:
    async with ingress(LazyClient(lambda: connect(f"127.0.0.1:{free_port()}"))) as http:
        response = await http.get("/healthz")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"


@pytest.mark.integration
async def test_metrics_count_requests_deliveries_and_time_them(http: httpx.AsyncClient) -> None:
    await post(http, notification(alert(unique_fingerprint())))
    await http.post("/alerts/alertmanager", json={})

    response = await http.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'suture_ingress_requests_total{route="/alerts/alertmanager",status="202"} 1.0' in text
    assert 'suture_ingress_requests_total{route="/alerts/alertmanager",status="401"} 1.0' in text
    assert 'suture_ingress_deliveries_total{kind="started"} 1.0' in text
    assert "suture_ingress_delivery_seconds_count 1.0" in text


# --- a real HTTP server ---------------------------------------------------------------


@pytest.mark.integration
async def test_serve_answers_over_http_and_stops_when_cancelled(fake_loop: Client, task_queue: str) -> None:
    async def provider() -> Client:
        return fake_loop

    port = free_port()
    started = asyncio.Event()
    server = asyncio.create_task(
        serve(create_app(provider, TOKEN, task_queue), "127.0.0.1", port, started=started)
    )
    await asyncio.wait_for(started.wait(), 5)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        response = await post(http, notification(alert(unique_fingerprint())))
    server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server

    assert response.status_code == 202
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{port}/healthz")


# --- hostile input: limits, media types ----------------------------------------------------------


async def test_a_body_that_is_not_declared_json_is_refused_with_415() -> None:
    async with ingress(never_called) as http:
        response = await http.post(
            "/alerts/alertmanager",
            content=json.dumps(notification(alert("dddd000000000001"))).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"},
        )
    assert response.status_code == 415 and "application/json" in response.json()["detail"]


@pytest.mark.parametrize(
    ("field", "value", "limit"),
    [
        ("labels", {"alertname": "X", "service": "s" * 3000}, "1024"),
        ("labels", {f"l{i}": "v" for i in range(100)}, "64"),
        ("annotations", {"description": "d" * 40_000}, "32768"),
    ],
)
async def test_an_alert_over_temporal_limits_gets_422_naming_the_field_and_the_limit(
    field: str, value: dict[str, str], limit: str
) -> None:
    oversized = alert("eeee000000000001")
    oversized[field] = value
    async with ingress(never_called) as http:
        response = await post(http, notification(oversized))
    assert response.status_code == 422
    [reason] = response.json()["detail"]
    assert field in reason["loc"] and limit in reason["msg"]


async def test_healthz_is_503_naming_prometheus_when_prometheus_is_down_while_readyz_stays_ok(
    temporal_client: Client,
) -> None:
    async def provider() -> Client:
        return temporal_client

    down = f"http://127.0.0.1:{free_port()}"
    app = create_app(provider, TOKEN, "unused", prometheus_url=down)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress") as http:
        health, ready, live = [await http.get(path) for path in ("/healthz", "/readyz", "/livez")]
    assert health.status_code == 503
    assert health.json()["temporal"] == "reachable" and "unreachable" in health.json()["prometheus"]
    assert ready.status_code == 200 and live.status_code == 200
