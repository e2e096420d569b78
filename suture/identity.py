"""Workflow IDs and idempotency keys derived from the incident, never from the run.

Deriving the ID from the alert fingerprint and its ``startsAt`` means every
notification of one firing episode maps to one run: Alertmanager repeats and
duplicates join it, and a start for an episode already closed is refused by
Temporal instead of acting twice.
"""

from __future__ import annotations

from suture.models import AlertNotice


def reliability_incident_key(alert: AlertNotice) -> str:
    return f"{alert.fingerprint}-{int(alert.starts_at.timestamp())}"


def reliability_workflow_id(alert: AlertNotice) -> str:
    return f"reliability-{reliability_incident_key(alert)}"
