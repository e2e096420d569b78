"""Without a webhook a briefing is never dropped: the log carries all of it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from temporalio.testing import ActivityEnvironment

from activities.notify import Escalation
from suture.models import ActionRecord, Briefing, Evidence, Loop, Mode

BRIEFING = Briefing(
    workflow_id="reliability-4f1c2a-1764050400",
    loop=Loop.RELIABILITY,
    title="HighLatency on shop/checkout: suture stopped and needs a human",
    subject="shop/checkout",
    impact="p99 latency 1.8s for checkout",
    scope="shop/checkout and the 3 services that call it",
    reason="verification failed (p99 1.7s >= 0.5s); the action was undone",
    evidence=[
        Evidence(
            source="prometheus",
            query="histogram_quantile(0.99, checkout_latency)",
            value=1.7,
            at=datetime(2026, 11, 25, 3, 4, tzinfo=UTC),
            note="after the rollback",
        )
    ],
    recent_changes=["revision 7 (shop/checkout:2.4.1) rolled out 6m ago"],
    would_have_done=["roll the Deployment back (k8s.rollback on shop/checkout)"],
    actions_taken=[
        ActionRecord(type="k8s.rollback", target="shop/checkout", mode=Mode.AUTONOMOUS, compensated=True)
    ],
    dependents=["shop/frontend"],
)


async def test_without_a_webhook_the_whole_briefing_is_logged_as_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        await ActivityEnvironment().run(Escalation(None).escalate, BRIEFING)

    [record] = [record for record in caplog.records if record.levelno == logging.WARNING]
    logged = record.getMessage()
    for text in (
        BRIEFING.workflow_id,
        BRIEFING.title,
        BRIEFING.subject,
        BRIEFING.impact,
        BRIEFING.scope,
        BRIEFING.reason,
        "histogram_quantile(0.99, checkout_latency) = 1.7 at 2026-11-25T03:04:00+00:00 (after the rollback)",
        *BRIEFING.recent_changes,
        *BRIEFING.would_have_done,
        "k8s.rollback on shop/checkout (autonomous, undone)",
        *BRIEFING.dependents,
    ):
        assert text in logged


async def test_the_logged_briefing_reads_one_field_per_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        await ActivityEnvironment().run(Escalation(None).escalate, BRIEFING)

    assert f"  why suture stopped: {BRIEFING.reason}\n" in caplog.text
    assert "  recent changes:\n    - revision 7 (shop/checkout:2.4.1) rolled out 6m ago\n" in caplog.text
