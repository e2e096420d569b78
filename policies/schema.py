"""The pieces every policy kind is built from: a strict base, action steps, approval, risks.

They live apart from the policy kinds so that each kind (reliability, security)
builds on them without importing another kind: the package has no import cycle.
Unknown keys are errors everywhere: a typo must never widen authority.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from policies.durations import Seconds


class PolicyModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActionStep(PolicyModel):
    """One action of the ordered list, validated against the registry by the loader."""

    type: str
    params: dict[str, Any] = {}


class Approval(PolicyModel):
    """Who may approve a supervised action and how long to wait before escalating."""

    approvers: list[str] = Field(min_length=1)
    timeout: Seconds = 3600.0


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
