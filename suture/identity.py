"""Workflow IDs and idempotency keys derived from the incident, never from the run.

Deriving the ID from the alert fingerprint and its ``startsAt`` means every
notification of one firing episode maps to one run: Alertmanager repeats and
duplicates join it, and a start for an episode already closed is refused by
Temporal instead of acting twice.
"""

from __future__ import annotations

import re

from suture.models import AlertNotice, AwsEvent


def reliability_incident_key(alert: AlertNotice) -> str:
    return f"{alert.fingerprint}-{int(alert.starts_at.timestamp())}"


def reliability_workflow_id(alert: AlertNotice) -> str:
    return f"reliability-{reliability_incident_key(alert)}"


_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]+")


def security_subject(event: AwsEvent) -> str:
    """The resource an AWS event is about: the group, bucket or principal it names, else the caller."""
    params = event.request_parameters
    for key in ("groupId", "bucketName", "userName", "roleName", "groupName"):
        value = params.get(key)
        if isinstance(value, str) and value:
            return value
    principal = event.principal
    return principal.access_key_id or principal.role_arn.rpartition("/")[2] or principal.type or "unknown"


def security_workflow_id(event: AwsEvent) -> str:
    """One run per EventBridge event: a redelivered event finds its run instead of starting one.

    Only the account and the event id make the ID, never the event's content: an
    event re-sent with a changed ``groupId`` is the same event and finds the same run.
    """
    return f"security-{event.account}-{_UNSAFE.sub('-', event.event_id)}"
