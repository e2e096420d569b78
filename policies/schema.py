"""The pieces every policy kind is built from: a strict base, action steps, approval.

They live apart from the policy kinds so that each kind (reliability, security)
builds on them without importing another kind: the package has no import cycle.
Unknown keys are errors everywhere: a typo must never widen authority.
"""

from __future__ import annotations

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
