"""Both ingress doors under hostile requests: a clear 4xx, a durable 202 or a 503, never a 500 or a hang.

Each example is one request with fuzzed credentials, content type, extra
headers and body (see :mod:`tests.fuzz.strategies`) against the real FastAPI app
in-process, with a fake Temporal (:mod:`tests.fuzz.fake_temporal`) that is
healthy, unreachable, failing or stalled. Whatever arrives, the answer is one a
sender can act on, and a 4xx means nothing reached Temporal: bad input is never
half-processed.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.fuzz.fake_temporal import FakeTemporal, TemporalHealth
from tests.fuzz.payloads import TOKEN, alertmanager_notification, aws_security_group_opened
from tests.fuzz.profiles import examples
from tests.fuzz.strategies import hostile_bodies
from workers.aws_events import aws_router
from workers.ingress import MAX_BODY_BYTES, create_app

ALERTS, EVENTS = "/alerts/alertmanager", "/events/aws"
ANSWERS = {202, 401, 413, 415, 422, 503}
HANG_S = 60
"""Far beyond any answer's time, even for an 8 MiB body on a busy machine: only a hang reaches it."""

GOOD_AUTH = [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER {TOKEN}"]
BAD_AUTH = [
    None,
    "",
    "Bearer",
    "Bearer ",
    f"Basic {TOKEN}",
    "Bearer wrong",
    f"Bearer {TOKEN}x",
    f"Bearer  {TOKEN}",
    f"Bearer {TOKEN[:-1]}",
    f"Token {TOKEN}",
    f"{TOKEN}",
]
JSON_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "application/cloudevents+json",
]
OTHER_TYPES = [
    None,
    "",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/jsonx",
    "json",
    "application/json-seq",
    "text/json",
]
RESERVED = {"authorization", "content-type", "content-length", "host", "transfer-encoding", "connection"}
printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
header_names = st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,20}\Z").filter(lambda n: n.lower() not in RESERVED)


@dataclass(frozen=True)
class HostileRequest:
    authorization: str | None
    content_type: str | None
    extra_headers: dict[str, str]
    body: bytes
    temporal: TemporalHealth

    def headers(self) -> dict[str, str]:
        headers = dict(self.extra_headers)
        if self.authorization is not None:
            headers["Authorization"] = self.authorization
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        return headers

    def refusal(self) -> int | None:
        """The status the door must answer before reading the body, if any."""
        if self.authorization not in GOOD_AUTH:
            return 401
        media = (self.content_type or "").partition(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            return 415
        if len(self.body) > MAX_BODY_BYTES:
            return 413
        return None

    def __repr__(self) -> str:  # a failing 8 MiB body would flood the report
        body = self.body if len(self.body) < 600 else self.body[:300] + b"..." + self.body[-100:]
        return (
            f"HostileRequest(authorization={self.authorization!r}, content_type={self.content_type!r}, "
            f"extra_headers={self.extra_headers!r}, temporal={self.temporal}, "
            f"body[{len(self.body)}]={body!r})"
        )


def mostly(
    usual: list[Any], unusual: list[Any], anything: st.SearchStrategy[Any] | None = None
) -> st.SearchStrategy[Any]:
    """Usually one of ``usual`` (so most requests reach the body), else ``unusual`` or ``anything``."""
    rare = st.sampled_from(unusual) if anything is None else st.sampled_from(unusual) | anything
    return st.integers(min_value=0, max_value=9).flatmap(
        lambda roll: st.sampled_from(usual) if roll >= 3 else rare
    )


@st.composite
def hostile_requests(draw: st.DrawFn, valid: dict[str, Any]) -> HostileRequest:
    return HostileRequest(
        authorization=draw(mostly(GOOD_AUTH, BAD_AUTH, printable)),
        content_type=draw(mostly(JSON_TYPES, OTHER_TYPES, printable)),
        extra_headers=draw(st.dictionaries(header_names, printable, max_size=3)),
        body=draw(hostile_bodies(valid)),
        temporal=draw(mostly([TemporalHealth.HEALTHY], list(TemporalHealth))),
    )


async def send(path: str, request: HostileRequest) -> tuple[httpx.Response, FakeTemporal]:
    temporal = FakeTemporal(health=request.temporal)
    stalled = request.temporal == TemporalHealth.STALLED
    app = create_app(
        temporal.provider, TOKEN, "fuzz", routers=[aws_router()], delivery_timeout=0.2 if stalled else 10
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress") as http:
        try:
            response = await asyncio.wait_for(
                http.post(path, content=request.body, headers=request.headers()), HANG_S
            )
        except TimeoutError:
            raise AssertionError(f"POST {path} hung: no answer within {HANG_S}s") from None
        finally:
            temporal.released.set()  # calls a stalled Temporal still holds may finish now
    return response, temporal


def assert_sound_answer(request: HostileRequest, response: httpx.Response, temporal: FakeTemporal) -> None:
    status = response.status_code
    reached = [(call.kind, call.workflow_id) for call in temporal.calls]
    event(f"answered {status} with Temporal {request.temporal}")
    assert status in ANSWERS, f"answered {status}: {response.text[:500]}"
    refusal = request.refusal()
    if refusal is not None:
        assert status == refusal, f"expected {refusal}, answered {status}: {response.text[:300]}"
    else:
        assert status in {202, 422, 503}, f"answered {status}: {response.text[:300]}"
    if 400 <= status < 500:
        assert reached == [], f"a {status} ({response.text[:300]}) after Temporal was called: {reached}"
        assert response.json()["detail"], "a refusal says why"
    if status == 503:
        assert request.temporal != TemporalHealth.HEALTHY, response.text[:300]
        assert int(response.headers["Retry-After"]) > 0
    if status == 202:
        assert request.temporal == TemporalHealth.HEALTHY
        called = {workflow_id for _, workflow_id in reached}
        answer = response.json()
        deliveries = answer["deliveries"] if "deliveries" in answer else [answer["delivery"]]
        assert deliveries, "a 202 says what it delivered"
        for delivery in deliveries:
            assert delivery["workflow_id"] in called, f"{delivery} was never sent to Temporal"


@settings(max_examples=examples(150))
@given(request=hostile_requests(alertmanager_notification()))
async def test_the_alertmanager_door_answers_every_request_soundly(request: HostileRequest) -> None:
    response, temporal = await send(ALERTS, request)
    assert_sound_answer(request, response, temporal)


@settings(max_examples=examples(150))
@given(request=hostile_requests(aws_security_group_opened()))
async def test_the_aws_events_door_answers_every_request_soundly(request: HostileRequest) -> None:
    response, temporal = await send(EVENTS, request)
    assert_sound_answer(request, response, temporal)


async def test_the_valid_seeds_are_accepted_so_mutations_start_from_a_202() -> None:
    for path, valid in ((ALERTS, alertmanager_notification()), (EVENTS, aws_security_group_opened())):
        body = json.dumps(valid).encode()
        request = HostileRequest(GOOD_AUTH[0], JSON_TYPES[0], {}, body, TemporalHealth.HEALTHY)
        response, temporal = await send(path, request)
        assert response.status_code == 202, response.text
        assert temporal.calls
