"""What happened to each alert or audit event on its way into Temporal, and how the ingress says so.

Both doors (``POST /alerts/alertmanager``, ``POST /events/aws``) and the SQS
poller share these pieces, so they fail the same way:

- a 2xx (:func:`accepted`) only once every start or signal is durable;
- 503 with ``Retry-After`` (:func:`not_delivered`) only when Temporal is
  unreachable or overloaded, so the sender's retry can succeed; the body lists
  what is durable (``delivered``), what was still in flight when the answer had
  to go (``in_flight``: it may have started, and a retry is idempotent), and what
  was never sent (``undelivered``);
- 422 when Temporal refused a call as invalid: retrying the same input cannot
  help, so the sender is told not to;
- 500 for anything else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from temporalio.service import RPCError, RPCStatusCode

from suture.errors import SutureError

RETRY_AFTER_S = 5
"""What a 503 asks the sender to wait before retrying."""

TRANSIENT = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.ABORTED,
        RPCStatusCode.CANCELLED,
    }
)
"""Temporal status codes after which the same call may succeed."""

REFUSED = frozenset(
    {RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.OUT_OF_RANGE, RPCStatusCode.FAILED_PRECONDITION}
)
"""Temporal status codes that say the input itself is wrong: a retry cannot help."""

log = logging.getLogger(__name__)


class DeliveryKind(StrEnum):
    """What one alert or audit event did to its run."""

    STARTED = "started"
    """It started a new run."""
    JOINED = "joined"
    """A firing alert reached the open run of its episode as an ``evidence`` signal."""
    DUPLICATE = "duplicate"
    """Its run already exists (for an alert: it has closed); no second run was started."""
    RESOLVED = "resolved"
    """A resolved alert reached the open run as an ``alert_resolved`` signal."""
    IGNORED = "ignored"
    """A resolved alert for which no run is open."""
    QUEUED = "queued"
    """It is durable in an ``AlertIntake`` run, which starts or signals its run (a storm's payload)."""
    MALFORMED = "malformed"
    """It could not be read (SQS); it reached no workflow."""
    FAILED = "failed"
    """Temporal did not take it; it is not durable and must be retried."""


DURABLE = frozenset(
    {
        DeliveryKind.STARTED,
        DeliveryKind.JOINED,
        DeliveryKind.DUPLICATE,
        DeliveryKind.RESOLVED,
        DeliveryKind.QUEUED,
    }
)


class Delivery(BaseModel):
    """The outcome for one alert, in the order of the payload."""

    model_config = ConfigDict(frozen=True)

    fingerprint: str
    status: str
    workflow_id: str
    kind: DeliveryKind


class EventDelivery(BaseModel):
    """The outcome for one AWS audit event."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    workflow_id: str
    kind: DeliveryKind


class DeliveryFailed(SutureError):
    """Temporal failed while a payload was being delivered.

    Attributes:
        delivered: what is durable in Temporal, in payload order.
        undelivered: workflow IDs never sent, or whose call failed.
        in_flight: workflow IDs whose call had not answered when the response had
            to go; each may or may not have started (a retry is idempotent).
        transient: Temporal was unreachable or overloaded: a retry may succeed.
        refused: Temporal rejected the input as invalid: a retry cannot succeed.
    """

    def __init__(
        self,
        message: str,
        delivered: Sequence[BaseModel],
        undelivered: list[str],
        *,
        transient: bool,
        refused: bool = False,
        in_flight: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.delivered = list(delivered)
        self.undelivered = undelivered
        self.in_flight = in_flight or []
        self.transient = transient
        self.refused = refused


def is_transient(error: BaseException) -> bool:
    """Whether the same call to Temporal may succeed later."""
    if isinstance(error, RPCError):
        return error.status in TRANSIENT
    # The SDK reports a lost connection that outlived its own retries as RuntimeError.
    return isinstance(error, RuntimeError | ConnectionError | TimeoutError)


def is_refused(error: BaseException) -> bool:
    """Whether Temporal rejected the input itself (too large, invalid)."""
    return isinstance(error, RPCError) and error.status in REFUSED


def reason_of(errors: Sequence[BaseException]) -> tuple[str, bool, bool]:
    """A one-line reason for the failures, and whether they are transient / a refusal."""
    cause = errors[0]
    transient = all(is_transient(error) for error in errors)
    refused = any(is_refused(error) for error in errors)
    if refused:
        reason = "Temporal refused the input"
    elif transient and any(isinstance(e, TimeoutError) for e in errors):
        reason = "Temporal did not answer in time"
    elif transient:
        reason = "Temporal is unreachable"
    elif isinstance(cause, RPCError):
        reason = "Temporal refused a call"
    else:
        reason = "delivery failed"
    return f"{reason} ({type(cause).__name__}: {cause})", transient and not refused, refused


def accepted(request: Request, content: dict[str, Any], kinds: Sequence[str]) -> JSONResponse:
    """202 with ``content``; counts the deliveries and times the request since its arrival."""
    metrics = request.app.state.ingress.metrics
    metrics.delivery_seconds.observe(time.monotonic() - request.state.arrived)
    for kind in kinds:
        metrics.deliveries.labels(kind=kind).inc()
    return JSONResponse(status_code=202, content=content)


def not_delivered(request: Request, failure: DeliveryFailed, kind_prefix: str = "") -> JSONResponse:
    """503 (retry later), 422 (do not retry) or 500, saying exactly what got through."""
    metrics = request.app.state.ingress.metrics
    for delivery in failure.delivered:
        metrics.deliveries.labels(kind=f"{kind_prefix}{getattr(delivery, 'kind', 'unknown')}").inc()
    log.warning("%s %s not fully delivered: %s", request.method, request.url.path, failure)
    body = {
        "delivered": [d.model_dump(mode="json") for d in failure.delivered],
        "in_flight": failure.in_flight,
        "undelivered": failure.undelivered,
    }
    if failure.refused:
        return JSONResponse(
            status_code=422, content={"detail": f"{failure}; retrying the same input cannot succeed", **body}
        )
    if failure.transient:
        return JSONResponse(
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
            content={"detail": f"{failure}; retry the whole request, delivery is idempotent", **body},
        )
    return JSONResponse(status_code=500, content={"detail": str(failure), **body})
