"""The HTTP ingress: webhooks in, durable workflow starts and signals out.

Its one promise to a sender is that a 2xx means the notification is durable in
Temporal. So the response waits for every start and signal call; when Temporal
is unreachable the answer is 503 (Alertmanager retries 5xx, and every call is
idempotent per incident) and lists the alerts that did get through; bad input
gets a 4xx with a reason and reaches no workflow at all.

Routes for other event sources plug in through ``create_app(..., routers=...)``
and get the same guarantees from the same pieces: :func:`require_token` (bearer
auth), :func:`received_at` (arrival stamp), :func:`parse_body` (422 with reasons),
:func:`ingress_state` (Temporal client, task queue, metrics), :func:`accepted`
and :func:`not_delivered` (202, or 503/500 saying what got through)::

    router = APIRouter()

    @router.post("/events/aws", status_code=202, dependencies=[Depends(require_token)])
    async def aws_event(request: Request, arrived: datetime = Depends(received_at)) -> JSONResponse:
        envelope = await parse_body(request, EventBridgeEnvelope)
        ...
        return accepted(request, deliveries)

    app = create_app(provider, token, task_queue, routers=[router])
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ValidationError
from temporalio.client import Client
from temporalio.service import RPCError

from suture.errors import ConfigError
from workers.alertmanager import AlertmanagerPayload, deliver, nothing_delivered
from workers.delivery import Delivery, DeliveryFailed
from workers.delivery import accepted as _accepted
from workers.delivery import not_delivered as _not_delivered
from workers.temporal_client import TemporalUnavailable

TOKEN_VARIABLE = "SUTURE_WEBHOOK_TOKEN"
MAX_BODY_BYTES = 8 * 1024 * 1024
"""Largest webhook body: a storm's payload of thousands of alerts fits; each alert is
checked against Temporal's limits on its own (:mod:`workers.limits`)."""

ClientProvider = Callable[[], Awaitable[Client]]
ModelT = TypeVar("ModelT", bound=BaseModel)

log = logging.getLogger(__name__)


class IngressMetrics:
    """The ingress's Prometheus metrics, in a registry of its own so apps do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "suture_ingress_requests",
            "HTTP requests by route and status code.",
            ["route", "status"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "suture_ingress_deliveries",
            "Alerts and events delivered to workflows, by what happened.",
            ["kind"],
            registry=self.registry,
        )
        self.delivery_seconds = Histogram(
            "suture_ingress_delivery_seconds",
            "From a webhook's arrival until every start and signal call returned.",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )


@dataclass(frozen=True)
class IngressState:
    """What every route shares; found on ``app.state.ingress``."""

    client_provider: ClientProvider
    token: str | None
    task_queue: str
    metrics: IngressMetrics
    delivery_timeout: float
    prometheus_url: str | None = None


def ingress_state(request: Request) -> IngressState:
    """FastAPI dependency: the state shared by the ingress routes."""
    state: IngressState = request.app.state.ingress
    return state


def require_token(request: Request) -> None:
    """FastAPI dependency: 401 unless the request carries the bearer token."""
    expected = ingress_state(request).token
    if expected is None:  # started with insecure=True
        return
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if not presented:
        raise HTTPException(
            401, detail="a bearer token is required", headers={"WWW-Authenticate": 'Bearer realm="suture"'}
        )
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise HTTPException(
            401,
            detail="the bearer token is wrong",
            headers={"WWW-Authenticate": 'Bearer realm="suture", error="invalid_token"'},
        )


def received_at(request: Request) -> datetime:
    """FastAPI dependency: when the request arrived (UTC), stamped by the ingress middleware."""
    stamp: datetime = request.state.received_at
    return stamp


async def parse_body(request: Request, model: type[ModelT]) -> ModelT:
    """Validate the JSON body against ``model``.

    Raises:
        HTTPException: 415 unless the body is declared JSON, 413 when it is too large,
            422 with the reasons when it is not JSON or does not match the model.
    """
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(415, detail=f"the body must be application/json, not {media_type or 'untyped'}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, detail=f"the body exceeds {MAX_BODY_BYTES} bytes")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(413, detail=f"the body exceeds {MAX_BODY_BYTES} bytes")
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        raise HTTPException(422, detail=_reasons(error)) from error


def _reasons(error: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
        for item in error.errors(include_url=False, include_input=False)
    ]


def accepted(request: Request, deliveries: list[Delivery]) -> JSONResponse:
    """202 listing the deliveries; counts them and times the request since its arrival."""
    content = {"deliveries": [d.model_dump(mode="json") for d in deliveries]}
    return _accepted(request, content, [d.kind for d in deliveries])


def not_delivered(request: Request, failure: DeliveryFailed) -> JSONResponse:
    """503 (retry later), 422 (do not retry) or 500, saying what got through and what did not."""
    return _not_delivered(request, failure)


def alertmanager_router() -> APIRouter:
    """``POST /alerts/alertmanager``: one reliability run per alert episode."""
    router = APIRouter()

    @router.post("/alerts/alertmanager", status_code=202, dependencies=[Depends(require_token)])
    async def alertmanager_webhook(
        request: Request,
        state: IngressState = Depends(ingress_state),
        arrived: datetime = Depends(received_at),
    ) -> JSONResponse:
        payload = await parse_body(request, AlertmanagerPayload)
        try:
            client = await state.client_provider()
            deliveries = await deliver(
                client, payload, arrived, state.task_queue, timeout=state.delivery_timeout
            )
        except TemporalUnavailable as error:
            return not_delivered(request, nothing_delivered(str(error), payload, arrived))
        except DeliveryFailed as failure:
            return not_delivered(request, failure)
        return accepted(request, deliveries)

    return router


def _operations_router() -> APIRouter:
    router = APIRouter()

    @router.get("/livez")
    async def livez() -> JSONResponse:
        """The process serves requests (a liveness probe: restart only when this fails)."""
        return JSONResponse(content={"status": "ok"})

    @router.get("/readyz")
    async def readyz(state: IngressState = Depends(ingress_state)) -> JSONResponse:
        """Temporal is reachable, so a webhook can be made durable (a readiness probe)."""
        temporal = await _temporal_health(state)
        return JSONResponse(
            status_code=200 if temporal == "reachable" else 503, content={"temporal": temporal}
        )

    @router.get("/healthz")
    async def healthz(state: IngressState = Depends(ingress_state)) -> JSONResponse:
        """Everything a run needs: Temporal, and Prometheus for evidence and verification."""
        checks = {"temporal": await _temporal_health(state)}
        if state.prometheus_url:
            checks["prometheus"] = await _prometheus_health(state.prometheus_url)
        healthy = all(value in ("reachable", "ready") for value in checks.values())
        return JSONResponse(
            status_code=200 if healthy else 503,
            content={"status": "ok" if healthy else "unavailable", **checks},
        )

    @router.get("/metrics")
    async def metrics(state: IngressState = Depends(ingress_state)) -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


async def _temporal_health(state: IngressState) -> str:
    try:
        client = await state.client_provider()
        serving = await client.service_client.check_health(timeout=timedelta(seconds=2))
    except (TemporalUnavailable, RPCError, RuntimeError) as error:
        return f"unreachable: {error}"
    return "reachable" if serving else "not serving"


async def _prometheus_health(url: str) -> str:
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            response = await http.get(f"{url.rstrip('/')}/-/ready")
    except httpx.HTTPError as error:
        return f"unreachable: {type(error).__name__}: {error}"
    return "ready" if response.status_code == 200 else f"not ready (HTTP {response.status_code})"


def create_app(
    client_provider: ClientProvider,
    token: str | None,
    task_queue: str,
    *,
    insecure: bool = False,
    routers: Iterable[APIRouter] = (),
    delivery_timeout: float = 10.0,
    prometheus_url: str | None = None,
) -> FastAPI:
    """Build the ingress application.

    Args:
        client_provider: returns the Temporal client; may raise TemporalUnavailable
            (e.g. :class:`workers.temporal_client.LazyClient`).
        token: the bearer token senders must present (``SUTURE_WEBHOOK_TOKEN``).
        task_queue: where the workflows started here are scheduled.
        insecure: accept requests without a token; required when ``token`` is empty.
        routers: more routes (e.g. ``POST /events/aws``). Their handlers declare
            ``dependencies=[Depends(require_token)]`` and take
            ``Depends(ingress_state)`` / ``Depends(received_at)`` and
            :func:`parse_body`; request counts are recorded for them too.
        delivery_timeout: seconds a webhook may wait for Temporal before it gets a 503.
        prometheus_url: checked by ``/healthz`` (runs need it for evidence and verification).

    Raises:
        ConfigError: no token and not ``insecure``.
    """
    if not token and not insecure:
        raise ConfigError(
            f"{TOKEN_VARIABLE} is not set: the ingress needs a bearer token for webhook senders "
            "(or pass --insecure-no-auth for local experiments)"
        )
    if not token:
        log.warning("the ingress accepts webhooks without authentication")
    app = FastAPI(title="suture ingress", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ingress = IngressState(
        client_provider=client_provider,
        token=token or None,
        task_queue=task_queue,
        metrics=IngressMetrics(),
        delivery_timeout=delivery_timeout,
        prometheus_url=prometheus_url,
    )

    @app.middleware("http")
    async def stamp_and_count(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request.state.received_at = datetime.now(UTC)
        request.state.arrived = time.monotonic()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        app.state.ingress.metrics.requests.labels(route=path, status=str(response.status_code)).inc()
        return response

    for router in (alertmanager_router(), _operations_router(), *routers):
        app.include_router(router)
    return app


async def serve(app: FastAPI, host: str, port: int, *, started: asyncio.Event | None = None) -> None:
    """Serve ``app`` with uvicorn until the task running this is cancelled.

    Signals are left to the caller (``suture up`` runs several components in one
    process and stops them together); cancelling the task shuts the server down
    gracefully, finishing requests in flight.

    Args:
        started: set once the socket is listening.

    Raises:
        OSError: the address cannot be bound (e.g. the port is in use).
    """
    # Bound here rather than by uvicorn, which would sys.exit() the whole process.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    server = _EmbeddedServer(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"), started
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        server.should_exit = True
        await serving
        raise
    finally:
        sock.close()


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves SIGINT/SIGTERM to the process embedding it."""

    def __init__(self, config: uvicorn.Config, started: asyncio.Event | None) -> None:
        super().__init__(config)
        self._started_event = started

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._started_event is not None and self.started:
            self._started_event.set()
