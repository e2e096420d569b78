"""Hand a human the briefing: POST it to a generic JSON webhook.

The body is the :class:`~suture.models.Briefing` itself, so any receiver can read
impact, scope, evidence and what automation did without a suture-specific
format. The ``Idempotency-Key`` header is the workflow id: one run escalates at
most once, so a retried delivery carries the same key and a receiver that honours
it pages once.

Failures are sorted the way a retry would fare: connection errors, timeouts, 5xx,
408 and 429 are transient and raised for Temporal to retry (honouring
``Retry-After``); any other answer (4xx, unexpected redirects) will not improve
by retrying and is non-retryable, with the receiver's reply in the message.

With no webhook configured the briefing is never dropped: it is logged at WARNING
with its full text (every field, readable as it stands in a terminal or a log
file) and the activity succeeds; the workflow has already audited the escalation
and the run's result keeps the briefing. ``suture up`` without
``SUTURE_ESCALATION_WEBHOOK`` therefore prints each briefing to its log.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
from temporalio import activity

from suture.errors import EscalationRefused, EscalationUnavailable
from suture.models import ActionRecord, Briefing, Evidence

TRANSIENT_STATUSES = frozenset({408, 429})
_REPLY_EXCERPT = 300


class Escalation:
    """The escalation channel.

    Args:
        webhook_url: where briefings are POSTed (``SUTURE_ESCALATION_WEBHOOK``);
            None logs them instead.
        client: the HTTP client to send with; one with a 10 s timeout when omitted.
    """

    def __init__(self, webhook_url: str | None, client: httpx.AsyncClient | None = None) -> None:
        self.webhook_url = webhook_url
        self.client = client or httpx.AsyncClient(timeout=10.0)

    async def aclose(self) -> None:
        await self.client.aclose()

    @activity.defn(name="notify.escalate")
    async def escalate(self, briefing: Briefing) -> None:
        if not self.webhook_url:
            activity.logger.warning(
                "escalation (SUTURE_ESCALATION_WEBHOOK is not set, so it is logged here):\n%s",
                briefing_text(briefing),
            )
            return
        try:
            response = await self.client.post(
                self.webhook_url,
                json=briefing.model_dump(mode="json", exclude={"channels", "routes"}),
                headers={"Idempotency-Key": briefing.workflow_id},
            )
        except httpx.TransportError as error:
            raise EscalationUnavailable.failure(
                f"escalation webhook unreachable: {type(error).__name__}: {error}"
            ) from error
        raise_for_answer(response, "escalation webhook")


def briefing_text(briefing: Briefing) -> str:
    """The whole briefing as plain text, one field per line, lists indented beneath."""
    lines = [
        f"{briefing.title}",
        f"  run: {briefing.workflow_id} ({briefing.loop.value} loop)",
        f"  subject: {briefing.subject}",
        f"  impact: {briefing.impact}",
        f"  scope: {briefing.scope}",
    ]
    optional = {
        "service": briefing.service,
        "users affected": briefing.users_affected,
        "severity": briefing.severity,
        "evidence age": "" if briefing.evidence_age_s is None else f"{briefing.evidence_age_s:.0f}s",
        "automation": briefing.automation,
        "confidence": _confidence_line(briefing),
        "tier": "" if briefing.tier is None else str(briefing.tier),
        "approvers": ", ".join(briefing.approvers),
        "answer before": briefing.deadline.isoformat(timespec="seconds") if briefing.deadline else "",
    }
    lines += [f"  {label}: {value}" for label, value in optional.items() if value]
    lines.append(f"  why suture stopped: {briefing.reason}")
    sections = {
        "evidence": [_evidence_line(item) for item in briefing.evidence],
        "recent changes": briefing.recent_changes,
        "automation would have": briefing.would_have_done,
        "actions taken": [_action_line(action) for action in briefing.actions_taken],
        "dependents": briefing.dependents,
    }
    if briefing.next_steps:
        sections["next steps"] = briefing.next_steps
    if briefing.commands is not None:
        commands = briefing.commands
        sections["commands"] = [
            c for c in (commands.approve, commands.reject, commands.undo, commands.status) if c
        ]
    for heading, items in sections.items():
        lines.append(f"  {heading}:" + ("" if items else " none"))
        lines += [f"    - {item}" for item in items]
    return "\n".join(lines)


def _confidence_line(briefing: Briefing) -> str:
    if briefing.confidence is None:
        return ""
    confidence = briefing.confidence
    required = f" (needs {confidence.required:.2f})" if confidence.required is not None else ""
    lowered = f"; lowered by {'; '.join(confidence.lowered_by)}" if confidence.lowered_by else ""
    return f"{confidence.value:.2f}{required}{lowered}"


def _evidence_line(evidence: Evidence) -> str:
    value = "" if evidence.value is None else f" = {evidence.value}"
    note = f" ({evidence.note})" if evidence.note else ""
    return f"{evidence.source}: {evidence.query}{value} at {evidence.at.isoformat()}{note}"


def _action_line(action: ActionRecord) -> str:
    state = ", undone" if action.compensated else ""
    detail = f": {action.detail}" if action.detail else ""
    return f"{action.type} on {action.target} ({action.mode.value}{state}){detail}"


def raise_for_answer(response: httpx.Response, receiver: str) -> None:
    """Return on 2xx; raise a retryable failure on 5xx/408/429, a non-retryable one otherwise."""
    status = response.status_code
    if 200 <= status < 300:
        return
    reply = response.text[:_REPLY_EXCERPT]
    if status >= 500 or status in TRANSIENT_STATUSES:
        raise EscalationUnavailable.failure(
            f"{receiver} answered {status}; will retry: {reply}",
            next_retry_delay=_retry_after(response),
        )
    raise EscalationRefused.failure(
        f"{receiver} refused the briefing with {status}: {reply} "
        "(check its URL or routing key and what the receiver expects)"
    )


def _retry_after(response: httpx.Response) -> timedelta | None:
    """``Retry-After`` in seconds, capped so a misbehaving receiver cannot stall a run for long."""
    value = response.headers.get("Retry-After", "")
    if not value.isdigit():
        return None
    return timedelta(seconds=min(int(value), 300))
