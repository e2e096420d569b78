"""The pieces every policy kind is built from: a strict base, action steps, approval, risks.

They live apart from the policy kinds so that each kind (reliability, security)
builds on them without importing another kind: the package has no import cycle.
Unknown keys are errors everywhere: a typo must never widen authority.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from policies.durations import Seconds
from suture.models import Channel, ChannelRoute


class PolicyModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActionStep(PolicyModel):
    """One action of the ordered list, validated against the registry by the loader."""

    type: str
    params: dict[str, Any] = {}


class Final(StrEnum):
    """What happens when the last tier of an escalation chain times out."""

    ABORT = "abort"
    """Do nothing and hand over with a briefing."""
    ACT_IF_REVERSIBLE = "act_if_reversible"
    """Act anyway, but only when every action has a declared undo and stays within its ``max_targets``."""


class Tier(PolicyModel):
    """One step of an escalation chain: who may answer, for how long, and where they are told."""

    approvers: list[str] = Field(min_length=1)
    timeout: Seconds
    channel: str | None = None
    """A channel name of the policy's ``notify:`` block; the briefing goes there when the tier starts."""


class Approval(PolicyModel):
    """Who may approve a supervised action and how long to wait before escalating.

    With ``tiers`` the wait goes tier by tier (e.g. on-call, then team lead, then
    incident commander); everyone of the tiers reached so far may answer. When
    ``approvers`` is omitted it is every tier's approvers, and that is also who
    may order an undo of the run.
    """

    approvers: list[str] = Field(default_factory=list, min_length=1)
    """Omitted (not validated) only when ``tiers`` name them; an explicit empty list is refused."""
    timeout: Seconds = 3600.0
    tiers: list[Tier] = []
    final: Final = Final.ABORT

    @model_validator(mode="after")
    def _someone_approves(self) -> Approval:
        if not self.approvers:
            self.approvers = list(dict.fromkeys(name for tier in self.tiers for name in tier.approvers))
        if not self.approvers:
            raise ValueError("an approval block needs approvers (or tiers with approvers)")
        return self


class Notify(PolicyModel):
    """Where this policy's briefings go.

    ``channels`` in order: each is the fallback of the one before. ``routes`` send
    by the alert's labels (``team``, ``owner``) to a subset, in their own order;
    the first route that matches wins, and no match means every channel.
    """

    channels: list[Channel] = Field(min_length=1)
    routes: list[ChannelRoute] = []

    @model_validator(mode="after")
    def _routes_name_channels(self) -> Notify:
        known = {channel.name for channel in self.channels}
        for route in self.routes:
            unknown = [name for name in route.channels if name not in known]
            if unknown:
                raise ValueError(f"route names unknown channels {unknown}; known: {sorted(known)}")
        return self

    def route(self, labels: dict[str, str]) -> list[Channel]:
        """The channels for a signal with ``labels``: the first matching route's, else all, in order."""
        by_name = {channel.name: channel for channel in self.channels}
        for route in self.routes:
            if all(labels.get(key) == value for key, value in route.labels.items()):
                return [by_name[name] for name in route.channels]
        return list(self.channels)

    def channel(self, name: str) -> Channel | None:
        return next((channel for channel in self.channels if channel.name == name), None)


class Risk(StrEnum):
    """A setting that can surprise; a policy keeps it only by naming it under ``acknowledge:``.

    The loader refuses each one it finds in a policy that does not acknowledge it
    (see :mod:`policies.hazards`), so an accident never ships and a deliberate
    choice is written down where a reviewer sees it.
    """

    CATCH_ALL_AUTONOMOUS = "catch_all_autonomous"
    """Mode autonomous with a match that accepts every alert (or every account and signal)."""
    NO_CONFIDENCE_FLOOR = "no_confidence_floor"
    """Mode autonomous with ``min_confidence: 0`` (security: ``risk.act_at: 0``)."""
    ZERO_COOLDOWN = "zero_cooldown"
    """A policy that can act with ``cooldown: 0``: the same target may be changed again at once."""
    ZERO_VERIFICATION_WINDOW = "zero_verification_window"
    """A policy that can act with ``verify.window: 0``: the result is judged before it can show."""
    LARGE_SCALE_LIMIT = "large_scale_limit"
    """An action parameter ``max_replicas`` above 100."""


def check_tier_channels(approval: Approval | None, notify: Notify | None) -> None:
    """Every tier's channel must be one of the policy's ``notify:`` channels.

    Raises:
        ValueError: naming the tier and the channels known.
    """
    for number, tier in enumerate(approval.tiers if approval else [], start=1):
        if tier.channel is not None and (notify is None or notify.channel(tier.channel) is None):
            known = sorted(channel.name for channel in notify.channels) if notify else []
            raise ValueError(f"approval tier {number} names channel {tier.channel!r}; known: {known}")
