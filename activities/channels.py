"""Escalation channels people watch: Slack, PagerDuty, and a generic JSON webhook.

Each channel gets the same :class:`~suture.models.Briefing` in the format it
publishes: a Slack incoming webhook a Block Kit message (sections in mrkdwn, a
context line with the run), PagerDuty's Events API v2 an event whose
``dedup_key`` is the run's workflow ID (so a retried send, or the later
``resolve``, addresses the one incident), the generic webhook the briefing as
JSON. Building a payload is pure (:func:`slack_message`, :func:`pagerduty_event`)
so that tests check each field against the published format.

One activity sends to one channel; the workflow walks a policy's channels in
order and falls back to the next when one fails, auditing each fallback. URLs
and routing keys come from the worker's environment (``url_env``,
``routing_key_env``), so a policy file never carries a secret.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from temporalio import activity

from activities.notify import briefing_text, raise_for_answer
from suture.errors import EscalationRefused, EscalationUnavailable
from suture.models import (
    Briefing,
    Channel,
    ChannelDelivery,
    ChannelEvent,
    ChannelKind,
    ChannelReceipt,
)

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")
SLACK_TEXT_LIMIT = 2900
"""Slack refuses a section text over 3000 characters."""


def slack_message(briefing: Briefing) -> dict[str, Any]:
    """A Block Kit message: header, impact and reason, evidence, automation, next steps, commands."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": briefing.title[:150]}},
        _section(
            f"*Impact:* {briefing.impact}\n*Scope:* {briefing.scope}"
            + (f"\n*Users:* {briefing.users_affected}" if briefing.users_affected else "")
            + (f"\n*Dependents:* {', '.join(briefing.dependents)}" if briefing.dependents else "")
        ),
        _section(f"*Why suture stopped:* {briefing.reason}"),
    ]
    if briefing.automation:
        blocks.append(_section(f"*Automation:* {briefing.automation}"))
    if briefing.confidence is not None:
        lowered = "; ".join(briefing.confidence.lowered_by) or "nothing"
        required = f" (needs {briefing.confidence.required:.2f})" if briefing.confidence.required else ""
        blocks.append(
            _section(f"*Confidence:* {briefing.confidence.value:.2f}{required}; lowered by {lowered}")
        )
    for heading, items in (
        ("Evidence", [_evidence_item(briefing, index) for index in range(len(briefing.evidence[-8:]))]),
        ("Recent changes", briefing.recent_changes),
        ("Would have done", briefing.would_have_done),
        ("Next steps", briefing.next_steps),
    ):
        if items:
            blocks.append(_section(f"*{heading}:*\n" + "\n".join(f"• {item}" for item in items)))
    commands = _command_lines(briefing)
    if commands:
        blocks.append(_section("*Commands:*\n" + "\n".join(f"`{line}`" for line in commands)))
    context = f"run `{briefing.workflow_id}` · {briefing.loop.value} loop"
    if briefing.tier is not None:
        context += f" · tier {briefing.tier}"
    if briefing.deadline is not None:
        context += f" · answer before {briefing.deadline.isoformat(timespec='seconds')}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": briefing.title, "blocks": blocks}


def pagerduty_event(briefing: Briefing, routing_key: str, event: ChannelEvent) -> dict[str, Any]:
    """An Events API v2 event; ``dedup_key`` is the run, so resolve closes what trigger opened."""
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": event.value,
        "dedup_key": briefing.workflow_id,
    }
    if event == ChannelEvent.RESOLVE:
        return body
    severity = briefing.severity if briefing.severity in PAGERDUTY_SEVERITIES else "error"
    body["payload"] = {
        "summary": f"{briefing.title}: {briefing.reason}"[:1024],
        "source": briefing.service or briefing.subject or "suture",
        "severity": severity,
        "component": briefing.subject,
        "group": briefing.labels.get("team", ""),
        "class": briefing.loop.value,
        "custom_details": briefing.model_dump(mode="json", exclude={"channels", "routes"})
        | {"text": briefing_text(briefing)},
    }
    return body


class ChannelSender:
    """Sends one briefing to one channel (activity ``notify.send``).

    Args:
        client: the HTTP client to send with; one with a 10 s timeout when omitted.
        environ: where ``url_env``/``routing_key_env`` are read (the process environment).
    """

    def __init__(
        self, client: httpx.AsyncClient | None = None, environ: dict[str, str] | None = None
    ) -> None:
        self.client = client or httpx.AsyncClient(timeout=10.0)
        self.environ = environ if environ is not None else os.environ

    @activity.defn(name="notify.send")
    async def send(self, delivery: ChannelDelivery) -> ChannelReceipt:
        channel, briefing = delivery.channel, delivery.briefing
        url, body = self._request(channel, briefing, delivery.event)
        try:
            response = await self.client.post(url, json=body, headers={"Idempotency-Key": _key(delivery)})
        except httpx.TransportError as error:
            where = f"channel {channel.name!r} ({channel.kind.value})"
            raise EscalationUnavailable.failure(
                f"{where} unreachable: {type(error).__name__}: {error}"
            ) from error
        raise_for_answer(response, f"channel {channel.name!r} ({channel.kind.value})")
        return ChannelReceipt(
            channel=channel.name, kind=channel.kind, status=response.status_code, detail=response.text[:200]
        )

    def _request(self, channel: Channel, briefing: Briefing, event: ChannelEvent) -> tuple[str, Any]:
        if channel.kind == ChannelKind.PAGERDUTY:
            key = channel.routing_key or self._env(channel, channel.routing_key_env, "routing_key")
            url = channel.url or (self.environ.get(channel.url_env, "") if channel.url_env else "")
            return url or PAGERDUTY_EVENTS_URL, pagerduty_event(briefing, key, event)
        url = channel.url or self._env(channel, channel.url_env, "url")
        if channel.kind == ChannelKind.SLACK:
            return url, slack_message(briefing)
        return url, briefing.model_dump(mode="json", exclude={"channels", "routes"}) | {"event": event.value}

    def _env(self, channel: Channel, variable: str, what: str) -> str:
        value = self.environ.get(variable, "") if variable else ""
        if not value:
            where = f"the environment variable {variable}" if variable else f"{what}: or {what}_env:"
            raise EscalationRefused.failure(f"channel {channel.name!r} has no {what}; set {where}")
        return value


def _key(delivery: ChannelDelivery) -> str:
    briefing = delivery.briefing
    tier = f"-tier{briefing.tier}" if briefing.tier is not None else ""
    return f"{briefing.workflow_id}-{delivery.channel.name}-{delivery.event.value}{tier}"


def _section(text: str) -> dict[str, Any]:
    if len(text) > SLACK_TEXT_LIMIT:
        text = text[: SLACK_TEXT_LIMIT - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _evidence_item(briefing: Briefing, index: int) -> str:
    item = briefing.evidence[-8:][index]
    value = "" if item.value is None else f" = {item.value}"
    note = f" ({item.note})" if item.note else ""
    return f"{item.source} `{item.query[:200]}`{value} at {item.at.isoformat(timespec='seconds')}{note}"


def _command_lines(briefing: Briefing) -> list[str]:
    commands = briefing.commands
    if commands is None:
        return []
    return [line for line in (commands.approve, commands.reject, commands.undo, commands.status) if line]
