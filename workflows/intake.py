"""``AlertIntake``: one durable chunk of an alert storm, delivered to its runs from the worker.

The ingress answers a storm's payload once each chunk's intake run has started
(see :mod:`suture.intake`); from then on Temporal holds every alert. The run
cuts its chunk into batches, runs by run, and hands each batch to the
``intake.deliver_alerts`` activity, which starts or signals each alert's
reliability run. That activity is idempotent per alert episode (the run's
workflow ID), so its retries, and a second intake of a re-sent payload, never
start a run twice. A batch Temporal refuses as invalid is reported, not retried.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from suture.intake import BATCH_ALERTS, IntakeInput, IntakeReport, pack
    from suture.models import AlertNotice

DELIVER = "intake.deliver_alerts"
REFUSED = "DeliveryRefused"
"""The error type of a batch Temporal refused as invalid: retrying cannot help."""
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[REFUSED],
)
"""Unlimited attempts otherwise: every alert of the chunk is durable here and must reach its run."""


@workflow.defn(name="AlertIntake")
class AlertIntake:
    @workflow.run
    async def run(self, intake: IntakeInput) -> IntakeReport:
        batches = pack(intake.alerts, BATCH_ALERTS)
        reports = await asyncio.gather(*(self._deliver(intake, batch) for batch in batches))
        return IntakeReport.merged(reports)

    async def _deliver(self, intake: IntakeInput, alerts: list[AlertNotice]) -> IntakeReport:
        batch = IntakeInput(alerts=alerts, task_queue=intake.task_queue, group_key=intake.group_key)
        try:
            return await workflow.execute_activity(
                DELIVER,
                batch,
                result_type=IntakeReport,
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=RETRY,
            )
        except ActivityError as error:
            return IntakeReport(kinds={"refused": len(alerts)}, failures=[str(error.cause or error)[:500]])
