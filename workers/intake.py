"""A storm's payload in: ``AlertIntake`` starts at the ingress, alert deliveries in the worker.

:func:`deliver_by_intake` is the ingress's side: it cuts a large payload into
chunks (:func:`suture.intake.pack`), starts one ``AlertIntake`` run per chunk,
and returns once every start is durable; a 2xx then means what it always means,
every alert is durable in Temporal. Ten starts instead of five thousand
signal-with-starts is what lets a 5,000-alert payload be answered in seconds.
When Temporal fails part way, :class:`DeliveryFailed` lists the alerts of the
chunks that are durable, in flight and undelivered, as the direct path does;
re-sending the whole payload is safe, since every delivery is idempotent per
alert episode.

:class:`AlertIntakeActivities` is the worker's side: ``intake.deliver_alerts``
delivers one batch with the same calls the ingress makes for a small payload
(:func:`workers.alertmanager.deliver_notices`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from suture.identity import reliability_workflow_id
from suture.intake import CHUNK_ALERTS, CHUNK_BYTES, IntakeInput, IntakeReport, pack
from suture.models import AlertNotice
from workers.delivery import Delivery, DeliveryFailed, DeliveryKind, reason_of

WORKFLOW = "AlertIntake"
REFUSED = "DeliveryRefused"
"""Matches ``workflows.intake.REFUSED``: a batch Temporal refused as invalid is not retried."""


async def deliver_by_intake(
    client: Client,
    notices: list[AlertNotice],
    task_queue: str,
    group_key: str = "",
    *,
    timeout: float | None = None,
) -> list[Delivery]:
    """Make every notice durable in ``AlertIntake`` runs; each is ``queued`` for its run.

    Raises:
        DeliveryFailed: a start failed or did not answer within ``timeout``.
    """
    chunks = pack(notices, CHUNK_ALERTS, CHUNK_BYTES)
    tasks = [asyncio.create_task(_start_intake(client, chunk, task_queue, group_key)) for chunk in chunks]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    errors = [error for task in done if (error := task.exception()) is not None]
    if pending:
        errors.append(TimeoutError(f"no answer from Temporal within {timeout}s"))
        for task in pending:
            task.add_done_callback(_swallow)
    queued = {
        id(notice)
        for chunk, task in zip(chunks, tasks, strict=True)
        if task in done and task.exception() is None
        for notice in chunk
    }
    if errors:
        in_flight = [
            notice for chunk, task in zip(chunks, tasks, strict=True) if task in pending for notice in chunk
        ]
        raise _failure(errors, notices, queued, in_flight) from errors[0]
    return [_queued(notice) for notice in notices]


async def _start_intake(client: Client, chunk: list[AlertNotice], task_queue: str, group_key: str) -> None:
    await client.start_workflow(
        WORKFLOW,
        IntakeInput(alerts=chunk, task_queue=task_queue, group_key=group_key[:200]),
        id=f"alert-intake-{uuid.uuid4().hex}",
        task_queue=task_queue,
        # Where the ingress shares its client with a worker, the worker takes the first task at once.
        request_eager_start=True,
        static_summary=f"alert intake: {len(chunk)} alerts of {group_key or 'one notification'}"[:400],
    )


def _queued(notice: AlertNotice) -> Delivery:
    return Delivery(
        fingerprint=notice.fingerprint,
        status=notice.status,
        workflow_id=reliability_workflow_id(notice),
        kind=DeliveryKind.QUEUED,
    )


def _swallow(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _failure(
    errors: list[BaseException], notices: list[AlertNotice], queued: set[int], in_flight: list[AlertNotice]
) -> DeliveryFailed:
    reason, transient, refused = reason_of(errors)
    delivered = [_queued(notice) for notice in notices if id(notice) in queued]
    flying = sorted({reliability_workflow_id(notice) for notice in in_flight})
    undelivered = sorted({reliability_workflow_id(n) for n in notices if id(n) not in queued} - set(flying))
    return DeliveryFailed(
        f"{reason}; {len(delivered)} of {len(notices)} alerts delivered",
        delivered,
        undelivered,
        transient=transient,
        refused=refused,
        in_flight=flying,
    )


class AlertIntakeActivities:
    """Delivers an intake run's batches through the worker's own Temporal client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name="intake.deliver_alerts")
    async def deliver_alerts(self, batch: IntakeInput) -> IntakeReport:
        """Start, join or signal the run of every alert of ``batch``.

        Raises:
            ApplicationError: ``DeliveryRefused`` (not retried) when Temporal refused the input;
                ``DeliveryFailed`` (retried) when it failed otherwise.
        """
        from workers.alertmanager import deliver_notices

        try:
            deliveries = await deliver_notices(self.client, batch.alerts, batch.task_queue)
        except DeliveryFailed as failure:
            kind = REFUSED if failure.refused else "DeliveryFailed"
            raise ApplicationError(str(failure), type=kind, non_retryable=failure.refused) from None
        return IntakeReport(kinds=dict(Counter(str(delivery.kind) for delivery in deliveries)))
