"""AWS audit events in: EventBridge envelopes of CloudTrail records, durable security-loop starts out.

Two doors lead to the same delivery. ``POST /events/aws`` (mounted by the ingress,
authenticated like the alert endpoint) takes one envelope, as an EventBridge API
destination sends it. :class:`SqsPoller` reads the same envelopes from an SQS queue
that an EventBridge rule targets (``suture ingress --sqs-queue URL``).

Every event starts one ``SecurityLoop`` run whose workflow ID comes from the
resource the event is about and the EventBridge event id
(:func:`suture.identity.security_workflow_id`), with ``REJECT_DUPLICATE``: an
event delivered twice, by either door or by an SQS redelivery, finds its run and
never starts a second one. A 2xx answer, or deleting the SQS message, happens
only after Temporal has accepted the start. Malformed input gets a 422 with the
reasons and reaches no workflow. Whether the event's account is governed at all
is the policy's call, made inside the run, which records an ungoverned event and
ends it as suppressed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from suture import search_attributes as sa
from suture.identity import security_subject, security_workflow_id
from suture.models import AwsEvent, AwsPrincipal, Loop, SecurityLoopInput
from workers import limits
from workers.delivery import (
    DURABLE,
    DeliveryFailed,
    DeliveryKind,
    EventDelivery,
    accepted,
    not_delivered,
    reason_of,
)
from workers.ingress import IngressState, ingress_state, parse_body, received_at, require_token
from workers.temporal_client import TemporalUnavailable

WORKFLOW = "SecurityLoop"
ClientProvider = Callable[[], Awaitable[Client]]

log = logging.getLogger(__name__)


# --- the envelope ----------------------------------------------------------------------------


class _Aws(BaseModel):
    # AWS adds fields to both formats over time: unknown ones are ignored, known ones checked.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class SessionIssuer(_Aws):
    type: str = ""
    arn: str = ""
    user_name: str = Field(default="", alias="userName")


class SessionContext(_Aws):
    session_issuer: SessionIssuer | None = Field(default=None, alias="sessionIssuer")


class UserIdentity(_Aws):
    """CloudTrail's ``userIdentity``: who made the call."""

    type: str
    arn: str = ""
    account_id: str = Field(default="", alias="accountId")
    access_key_id: str = Field(default="", alias="accessKeyId")
    user_name: str = Field(default="", alias="userName")
    session_context: SessionContext | None = Field(default=None, alias="sessionContext")

    def principal(self) -> AwsPrincipal:
        issuer = self.session_context.session_issuer if self.session_context else None
        return AwsPrincipal(
            type=self.type,
            arn=self.arn,
            account=self.account_id,
            access_key_id=self.access_key_id,
            user_name=self.user_name,
            role_arn=issuer.arn if issuer is not None and issuer.type == "Role" else "",
        )


class CloudTrailRecord(_Aws):
    """The ``detail`` of an "AWS API Call via CloudTrail" event: one CloudTrail record."""

    event_time: AwareDatetime = Field(alias="eventTime")
    event_source: str = Field(alias="eventSource", min_length=1)
    event_name: str = Field(alias="eventName", min_length=1)
    aws_region: str = Field(alias="awsRegion", min_length=1)
    source_ip_address: str = Field(default="", alias="sourceIPAddress")
    user_agent: str = Field(default="", alias="userAgent")
    user_identity: UserIdentity = Field(alias="userIdentity")
    request_parameters: dict[str, Any] | None = Field(default=None, alias="requestParameters")
    response_elements: dict[str, Any] | None = Field(default=None, alias="responseElements")
    error_code: str = Field(default="", alias="errorCode", max_length=256)
    event_id: str = Field(default="", alias="eventID", max_length=256)

    @field_validator("request_parameters", "response_elements")
    @classmethod
    def _fits(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            limits.check_size("the field", json.dumps(value), limits.MAX_REQUEST_PARAMETERS_BYTES)
        return value


class EventBridgeEnvelope(_Aws):
    """An EventBridge event whose ``detail`` is a CloudTrail record."""

    version: str
    # It becomes part of a workflow ID, so only characters that are safe there.
    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    detail_type: str = Field(alias="detail-type")
    source: str
    account: str = Field(pattern=r"^[0-9]{12}$")
    time: AwareDatetime
    region: str = Field(min_length=1)
    resources: list[str] = []
    detail: CloudTrailRecord

    @field_validator("detail_type")
    @classmethod
    def _from_cloudtrail(cls, value: str) -> str:
        if not value.endswith("via CloudTrail"):
            raise ValueError(
                f"{value!r} is not a CloudTrail event (expected e.g. 'AWS API Call via CloudTrail')"
            )
        return value

    @model_validator(mode="after")
    def _fits_one_run(self) -> EventBridgeEnvelope:
        subject = security_subject(self.to_event(datetime.now(UTC)))
        if len(subject) > limits.MAX_SUBJECT:
            size = len(subject)
            raise ValueError(
                f"the resource the event names is {size} characters; the limit is {limits.MAX_SUBJECT}"
            )
        limits.check_size("the event", self.model_dump_json(by_alias=True), limits.MAX_RUN_INPUT_BYTES)
        return self

    def to_event(self, received: datetime) -> AwsEvent:
        """The event as the security loop receives it."""
        detail = self.detail
        return AwsEvent(
            event_id=self.id,
            account=self.account,
            region=detail.aws_region,
            event_name=detail.event_name,
            event_source=detail.event_source,
            event_time=detail.event_time,
            principal=detail.user_identity.principal(),
            source_ip=detail.source_ip_address,
            user_agent=detail.user_agent,
            request_parameters=detail.request_parameters or {},
            response_elements=detail.response_elements or {},
            error_code=detail.error_code,
            cloudtrail_event_id=detail.event_id,
            received_at=received,
        )


# --- delivery ----------------------------------------------------------------------------------


async def deliver_event(client: Client, event: AwsEvent, task_queue: str) -> EventDelivery:
    """Start the event's security run, or find it already there.

    Raises:
        RPCError: Temporal refused or could not be reached; nothing may be assumed durable.
    """
    workflow_id = security_workflow_id(event)
    try:
        await client.start_workflow(
            WORKFLOW,  # by name: the ingress imports no workflow code
            SecurityLoopInput(event=event),
            id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            # Where the ingress shares its client with a worker (``suture up``), the server hands
            # the run's first workflow task back in this answer: one round trip fewer per event.
            # Elsewhere the SDK finds no local worker and starts the run as usual.
            request_eager_start=True,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.SUTURE_LOOP, Loop.SECURITY.value),
                    SearchAttributePair(sa.SUTURE_SERVICE, f"{event.account}/{security_subject(event)}"),
                ]
            ),
            static_summary=f"security: {event.event_name} by {event.principal} in {event.account}"[:400],
            static_details=(
                "**security loop** started by a CloudTrail event  \n"
                f"event: {event.event_source} {event.event_name} ({event.event_id})  \n"
                f"principal: `{event.principal}` from {event.source_ip or 'unknown address'}  \n"
                f"region: {event.region}, at {event.event_time.isoformat(timespec='seconds')}  \n"
                "outcome: the `SutureOutcome` search attribute; the current step: the `status` query"
            ),
        )
    except WorkflowAlreadyStartedError:
        return EventDelivery(event_id=event.event_id, workflow_id=workflow_id, kind=DeliveryKind.DUPLICATE)
    return EventDelivery(event_id=event.event_id, workflow_id=workflow_id, kind=DeliveryKind.STARTED)


# --- POST /events/aws --------------------------------------------------------------------------


def aws_router() -> APIRouter:
    """``POST /events/aws``: one EventBridge envelope of a CloudTrail record, one security run."""
    router = APIRouter()

    @router.post("/events/aws", status_code=202, dependencies=[Depends(require_token)])
    async def aws_event(
        request: Request,
        state: IngressState = Depends(ingress_state),
        arrived: datetime = Depends(received_at),
    ) -> JSONResponse:
        envelope = await parse_body(request, EventBridgeEnvelope)
        try:
            client = await state.client_provider()
            delivery = await asyncio.wait_for(
                deliver_event(client, envelope.to_event(arrived), state.task_queue), state.delivery_timeout
            )
        except (TemporalUnavailable, RPCError, RuntimeError, TimeoutError) as error:
            reason, transient, refused = reason_of([error])
            workflow_id = security_workflow_id(envelope.to_event(arrived))
            timed_out = isinstance(error, TimeoutError)
            failure = DeliveryFailed(
                f"{reason}; the run was not started",
                [],
                [] if timed_out else [workflow_id],
                transient=transient or isinstance(error, TemporalUnavailable),
                refused=refused,
                in_flight=[workflow_id] if timed_out else [],
            )
            return not_delivered(request, failure, kind_prefix="aws_")
        content = {"delivery": delivery.model_dump(mode="json")}
        return accepted(request, content, [f"aws_{delivery.kind}"])

    return router


# --- the SQS poller -------------------------------------------------------------------------------


class PollReport(BaseModel):
    """What one receive did."""

    received: int = 0
    started: int = 0
    duplicates: int = 0
    malformed: int = 0
    failed: int = 0


class SqsPoller:
    """Long-polls an SQS queue of EventBridge envelopes and starts a security run for each.

    A message is deleted only once its run's start is durable (started, or found
    already there). A message whose start failed stays and comes back after the
    queue's visibility timeout. A malformed message is logged and left for the
    queue's redrive policy to move to a dead-letter queue: it can never start a run.

    Args:
        client_provider: returns the Temporal client (may raise TemporalUnavailable).
        queue_url: the queue EventBridge delivers to.
        task_queue: where the security runs are scheduled.
        sqs: a boto3 SQS client; one for the queue's region when omitted.
        wait_s: long-poll wait per receive (SQS allows up to 20 s).
    """

    def __init__(
        self,
        client_provider: ClientProvider,
        queue_url: str,
        task_queue: str,
        *,
        sqs: Any = None,
        wait_s: int = 20,
        batch: int = 10,
    ) -> None:
        self.client_provider = client_provider
        self.queue_url = queue_url
        self.task_queue = task_queue
        self.sqs = sqs or boto3.client("sqs", region_name=_region_of(queue_url))
        self.wait_s = wait_s
        self.batch = batch

    async def run(self, backoff_s: float = 5.0) -> None:
        """Poll until cancelled; an unreachable SQS or Temporal only pauses polling."""
        while True:
            try:
                await self.poll_once()
            except (BotoCoreError, ClientError, TemporalUnavailable) as error:
                log.warning("SQS poll of %s failed: %s; retrying in %.0fs", self.queue_url, error, backoff_s)
                await asyncio.sleep(backoff_s)

    async def poll_once(self) -> PollReport:
        """Receive one batch, start its runs, delete the messages whose start is durable."""
        answer = await asyncio.to_thread(
            self.sqs.receive_message,
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch,
            WaitTimeSeconds=self.wait_s,
        )
        messages = answer.get("Messages", [])
        if not messages:
            return PollReport()
        arrived = datetime.now(UTC)
        client = await self.client_provider()
        outcomes = await asyncio.gather(*(self._deliver(client, message, arrived) for message in messages))
        durable = [m for m, kind in zip(messages, outcomes, strict=True) if kind in DURABLE]
        if durable:
            await asyncio.to_thread(
                self.sqs.delete_message_batch,
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(durable)],
            )
        return PollReport(
            received=len(messages),
            started=outcomes.count(DeliveryKind.STARTED),
            duplicates=outcomes.count(DeliveryKind.DUPLICATE),
            malformed=outcomes.count(DeliveryKind.MALFORMED),
            failed=outcomes.count(DeliveryKind.FAILED),
        )

    async def _deliver(self, client: Client, message: dict[str, Any], arrived: datetime) -> DeliveryKind:
        try:
            envelope = EventBridgeEnvelope.model_validate(_unwrap(message["Body"]))
        except (ValidationError, ValueError) as error:
            log.warning(
                "SQS message %s is not an EventBridge CloudTrail event: %s", message.get("MessageId"), error
            )
            return DeliveryKind.MALFORMED
        try:
            delivery = await deliver_event(client, envelope.to_event(arrived), self.task_queue)
        except (RPCError, RuntimeError) as error:
            log.warning("AWS event %s not delivered, the message stays: %s", envelope.id, error)
            return DeliveryKind.FAILED
        return delivery.kind


def _unwrap(body: str) -> Any:
    """The envelope, also when SNS sits between EventBridge and the queue."""
    document = json.loads(body)
    if isinstance(document, dict) and document.get("Type") == "Notification" and "Message" in document:
        return json.loads(document["Message"])
    return document


def _region_of(queue_url: str) -> str | None:
    host = queue_url.split("/")[2] if "://" in queue_url else ""
    parts = host.split(".")
    if len(parts) >= 4 and parts[0] == "sqs":
        return parts[1]
    return None  # a custom endpoint: the session's region applies
