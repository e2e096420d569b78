"""Alertmanager webhook notifications in, reliability-loop starts and signals out.

Alertmanager re-sends a group on every ``repeat_interval``, after a restart, and
from each replica of an HA pair, so the same alert arrives many times. The
workflow ID comes from the alert's fingerprint and ``startsAt``
(:mod:`suture.identity`), and a firing alert is delivered with one
signal-with-start: the first notification of an episode starts the run, every
later one joins it as an ``evidence`` signal, and once the episode's run has
closed, ``REJECT_DUPLICATE`` makes Temporal refuse a second run instead of
acting twice. A resolved alert is signalled to the run, and ignored when no run
is open.

:func:`deliver` returns only after every call has returned, i.e. once each
notification is durable in Temporal (for a storm's payload: once each chunk is
durable in an ``AlertIntake`` run, see :mod:`suture.intake`). When Temporal fails part way it raises
:class:`DeliveryFailed` saying which alerts did get through; since every call
is idempotent per episode, Alertmanager can safely retry the whole payload.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from suture import search_attributes as sa
from suture.identity import reliability_workflow_id
from suture.intake import DIRECT_ALERTS
from suture.models import AlertNotice, Loop, ReliabilityLoopInput
from workers import limits
from workers.delivery import Delivery, DeliveryFailed, DeliveryKind, reason_of

WORKFLOW = "ReliabilityLoop"
EVIDENCE_SIGNAL = "evidence"
RESOLVED_SIGNAL = "alert_resolved"
MAX_CONCURRENT_CALLS = 32
"""Calls to Temporal in flight for one notification; a storm's large groups queue behind it."""

_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
"""Go's zero ``time.Time``: Alertmanager's ``endsAt`` of an alert that has not ended."""


# --- the webhook payload (version 4) ------------------------------------------------


class _Webhook(BaseModel):
    # Alertmanager adds keys between releases; unknown ones are ignored, known ones checked.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class AlertmanagerAlert(_Webhook):
    """One alert of a notification."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(max_length=limits.MAX_LABELS)
    annotations: dict[str, str] = Field(default={}, max_length=limits.MAX_LABELS)
    starts_at: AwareDatetime = Field(alias="startsAt")
    ends_at: AwareDatetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    # It becomes part of a workflow ID, so only characters that are safe there.
    fingerprint: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")

    @field_validator("starts_at")
    @classmethod
    def _has_started(cls, value: datetime) -> datetime:
        if value <= _ZERO_TIME:
            raise ValueError("startsAt must be a real time, not the zero time")
        return value

    @field_validator("ends_at")
    @classmethod
    def _zero_means_open(cls, value: datetime | None) -> datetime | None:
        return None if value is None or value <= _ZERO_TIME else value

    @field_validator("labels")
    @classmethod
    def _labels_fit(cls, value: dict[str, str]) -> dict[str, str]:
        limits.check_labels(value, limits.MAX_LABEL_VALUE)
        return value

    @field_validator("annotations")
    @classmethod
    def _annotations_fit(cls, value: dict[str, str]) -> dict[str, str]:
        limits.check_labels(value, limits.MAX_ANNOTATION_VALUE)
        return value

    @model_validator(mode="after")
    def _fits_one_run(self) -> AlertmanagerAlert:
        limits.check_size("the alert", self.model_dump_json(by_alias=True), limits.MAX_RUN_INPUT_BYTES)
        return self

    def to_notice(self, received_at: datetime) -> AlertNotice:
        """The alert as the reliability loop receives it."""
        return AlertNotice(
            fingerprint=self.fingerprint,
            status=self.status,
            labels=self.labels,
            annotations=self.annotations,
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            generator_url=self.generator_url,
            received_at=received_at,
        )


class AlertmanagerPayload(_Webhook):
    """The body Alertmanager POSTs to a webhook receiver (``version: "4"``)."""

    version: Literal["4"]
    group_key: str = Field(alias="groupKey")
    status: Literal["firing", "resolved"]
    receiver: str
    group_labels: dict[str, str] = Field(default={}, alias="groupLabels")
    common_labels: dict[str, str] = Field(default={}, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default={}, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[AlertmanagerAlert] = Field(min_length=1)
    truncated_alerts: int = Field(default=0, ge=0, alias="truncatedAlerts")


# --- delivery -------------------------------------------------------------------------


def nothing_delivered(reason: str, payload: AlertmanagerPayload, received_at: datetime) -> DeliveryFailed:
    """Temporal was unreachable before the first call: every alert is undelivered."""
    workflow_ids = {reliability_workflow_id(a.to_notice(received_at)) for a in payload.alerts}
    return DeliveryFailed(
        f"{reason}; 0 of {len(payload.alerts)} alerts delivered", [], sorted(workflow_ids), transient=True
    )


def service_of(labels: dict[str, str]) -> str:
    """``namespace/service`` (or ``/deployment``): the ``SutureService`` search attribute."""
    return f"{labels.get('namespace', '-')}/{labels.get('service', labels.get('deployment', '-'))}"


async def deliver(
    client: Client,
    payload: AlertmanagerPayload,
    received_at: datetime,
    task_queue: str,
    *,
    timeout: float | None = None,
) -> list[Delivery]:
    """Start, join or signal the reliability run of every alert in ``payload``.

    A payload of up to :data:`~suture.intake.DIRECT_ALERTS` alerts is delivered
    alert by alert (:func:`deliver_notices`). A larger one, a storm, is made
    durable in ``AlertIntake`` runs instead (:func:`workers.intake.deliver_by_intake`),
    which deliver its alerts from the worker: each alert is then ``queued``.

    Args:
        timeout: seconds after which the calls still in flight are abandoned and
            their alerts reported undelivered; None waits for the SDK's own retries.

    Raises:
        DeliveryFailed: a call to Temporal failed or timed out; says which alerts were delivered.
    """
    from workers.intake import deliver_by_intake

    notices = [alert.to_notice(received_at) for alert in payload.alerts]
    if len(notices) > DIRECT_ALERTS:
        return await deliver_by_intake(client, notices, task_queue, payload.group_key, timeout=timeout)
    return await deliver_notices(client, notices, task_queue, timeout=timeout)


async def deliver_notices(
    client: Client, notices: list[AlertNotice], task_queue: str, *, timeout: float | None = None
) -> list[Delivery]:
    """Start, join or signal the run of every notice, one call each.

    Alerts of different runs are delivered concurrently; alerts of the same run in
    payload order, so its signals arrive in the order Alertmanager sent them.

    Raises:
        DeliveryFailed: as :func:`deliver`.
    """
    by_run: dict[str, list[int]] = {}
    for index, notice in enumerate(notices):
        by_run.setdefault(reliability_workflow_id(notice), []).append(index)
    results: dict[int, Delivery] = {}

    calls_in_flight = asyncio.Semaphore(MAX_CONCURRENT_CALLS)
    started: set[int] = set()

    async def deliver_run(indices: list[int]) -> None:
        for index in indices:
            async with calls_in_flight:
                started.add(index)
                try:
                    results[index] = await _deliver_one(client, notices[index], task_queue)
                finally:
                    started.discard(index)

    tasks = [asyncio.create_task(deliver_run(indices)) for indices in by_run.values()]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    # Calls still in flight are left to finish in the background rather than cut off:
    # each may already be durable, and a retry of the payload will find it either way.
    errors = [error for task in done if (error := task.exception()) is not None]
    if pending:
        errors.append(TimeoutError(f"no answer from Temporal within {timeout}s"))
        for task in pending:
            task.add_done_callback(_swallow)
    if errors:
        raise _failure(errors, notices, results, started) from errors[0]
    return [results[index] for index in range(len(notices))]


def _swallow(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _deliver_one(client: Client, notice: AlertNotice, task_queue: str) -> Delivery:
    workflow_id = reliability_workflow_id(notice)
    if notice.status == "resolved":
        kind = await _signal_resolved(client, workflow_id, notice)
    else:
        kind = await _signal_with_start(client, workflow_id, notice, task_queue)
    return Delivery(fingerprint=notice.fingerprint, status=notice.status, workflow_id=workflow_id, kind=kind)


async def _signal_with_start(
    client: Client, workflow_id: str, notice: AlertNotice, task_queue: str
) -> DeliveryKind:
    try:
        handle = await client.start_workflow(
            WORKFLOW,
            ReliabilityLoopInput(alert=notice),
            id=workflow_id,
            task_queue=task_queue,
            start_signal=EVIDENCE_SIGNAL,
            start_signal_args=[notice],
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.SUTURE_LOOP, Loop.RELIABILITY.value),
                    SearchAttributePair(sa.SUTURE_SERVICE, service_of(notice.labels)),
                ]
            ),
            static_summary=_summary(notice),
            static_details=_details(notice),
        )
    except WorkflowAlreadyStartedError:
        return DeliveryKind.DUPLICATE
    return DeliveryKind.STARTED if _was_started(handle) else DeliveryKind.JOINED


def _summary(notice: AlertNotice) -> str:
    """The one line the Temporal UI lists for the run."""
    return f"reliability: {notice.labels.get('alertname', 'alert')} on {service_of(notice.labels)}"


def _details(notice: AlertNotice) -> str:
    """What the Temporal UI shows on the run's page: the alert as it arrived (Markdown)."""
    labels = ", ".join(f"{key}={value}" for key, value in sorted(notice.labels.items()))
    summary = notice.annotations.get("summary") or notice.annotations.get("description") or ""
    lines = [
        "**reliability loop** started by an Alertmanager alert",
        f"labels: `{labels[:1000]}`",
        f"started at: {notice.starts_at.isoformat(timespec='seconds')}",
    ]
    if summary:
        lines.append(f"summary: {summary[:500]}")
    lines.append("outcome: the `SutureOutcome` search attribute; the current step: the `status` query")
    return "  \n".join(lines)


def _was_started(handle: WorkflowHandle[Any, Any]) -> bool:
    # Only the server knows whether signal-with-start created the run: the run ID
    # and first-execution run ID are the same whether it started or joined. The SDK
    # keeps the server's response (with its ``started`` flag) on the handle; the
    # integration tests pin this behaviour for the SDK version suture requires.
    response = getattr(handle, "_start_workflow_response", None)
    return bool(getattr(response, "started", False))


async def _signal_resolved(client: Client, workflow_id: str, notice: AlertNotice) -> DeliveryKind:
    try:
        await client.get_workflow_handle(workflow_id).signal(RESOLVED_SIGNAL, notice)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:  # never started, or already closed
            return DeliveryKind.IGNORED
        raise
    return DeliveryKind.RESOLVED


def _failure(
    errors: Sequence[BaseException],
    notices: list[AlertNotice],
    results: dict[int, Delivery],
    started: set[int],
) -> DeliveryFailed:
    reason, transient, refused = reason_of(errors)
    delivered = [results[index] for index in sorted(results)]
    # ``started`` holds the calls still running when the answer had to go: each may be durable.
    in_flight = sorted({reliability_workflow_id(notices[i]) for i in started})
    undelivered = sorted(
        {reliability_workflow_id(n) for i, n in enumerate(notices) if i not in results} - set(in_flight)
    )
    return DeliveryFailed(
        f"{reason}; {len(delivered)} of {len(notices)} alerts delivered",
        delivered,
        undelivered,
        transient=transient,
        refused=refused,
        in_flight=in_flight,
    )
