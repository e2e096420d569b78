"""The policy schema. Unknown keys are errors: a typo must never widen authority.

A policy file holds a list under ``policies:``. Each policy names the loop it
governs, what it matches, the ordered actions it may take, the mode it grants,
the confidence it demands and how the result is verified. The loader pins a
content hash as ``version``; a run records it and never sees later edits.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from policies.durations import Seconds
from policies.queries import check_template
from policies.resource import ResourcePolicy
from policies.schema import ActionStep, Approval, Notify, PolicyModel, Risk, check_tier_channels
from policies.security_policy import SecurityPolicy
from policies.trust import Trust
from suture.models import HealthCheck, Loop, Mode

_CONDITION = re.compile(r"^\s*(<=|>=|==|!=|<|>)\s*(-?\d+(?:\.\d+)?(?:[eE]-?\d+)?)\s*$")


class Match(PolicyModel):
    """Which signals a policy applies to. Every key given must equal the signal's."""

    alertname: str | None = None
    labels: dict[str, str] = {}

    def accepts(self, labels: dict[str, str]) -> bool:
        if self.alertname is not None and labels.get("alertname") != self.alertname:
            return False
        return all(labels.get(key) == value for key, value in self.labels.items())


class Signature(PolicyModel):
    """A known failure mode and the confidence its presence gives."""

    name: str
    confidence: float = Field(ge=0.0, le=1.0)
    recent_rollout_within: Seconds | None = None
    description: str = ""


class Verification(PolicyModel):
    """Wait ``window`` for the change to propagate, then the query must meet ``condition``."""

    query: str
    condition: str
    window: Seconds = 60.0
    max_staleness: Seconds = 15.0

    @field_validator("query")
    @classmethod
    def _labels_only_as_matcher_values(cls, value: str) -> str:
        check_template(value)
        return value

    @field_validator("condition")
    @classmethod
    def _condition_is_comparison(cls, value: str) -> str:
        if not _CONDITION.match(value):
            raise ValueError(f"{value!r} is not a condition; write it like '< 0.5' or '>= 0.99'")
        return value

    def health_check(self, query: str) -> HealthCheck:
        found = _CONDITION.match(self.condition)
        assert found is not None  # guaranteed by the validator
        return HealthCheck(
            query=query,
            operator=found.group(1),
            threshold=float(found.group(2)),
            max_staleness_s=self.max_staleness,
        )


class TargetRule(PolicyModel):
    """Which alert labels name the Kubernetes object to act on."""

    kind: Literal["deployment"] = "deployment"
    namespace_label: str = "namespace"
    name_label: str = "deployment"


class StormRule(PolicyModel):
    """When alerts of this policy fire together, look for one upstream to act on instead.

    With at least ``min_alerts`` alerts of the same name firing in a namespace,
    an upstream that all of them depend on (per the dependency graph) and that
    rolled out within ``changed_within`` is treated as the root: one run acts on it
    (under the policy that matches the alert ``DependencyStorm``) and the alerts
    join that run as evidence. With no such upstream the storm gets one briefing.
    Alerts whose earliest start falls in the same ``bucket`` join the same storm.
    """

    min_alerts: int = Field(default=3, ge=2)
    changed_within: Seconds = 1800.0
    gather: Seconds = 5.0
    bucket: Seconds = 600.0


class ReliabilityPolicy(PolicyModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    loop: Literal[Loop.RELIABILITY] = Loop.RELIABILITY
    description: str = ""
    match: Match
    mode: Mode
    min_confidence: float = Field(default=0.7, ge=0.0, le=1.0)
    base_confidence: float = Field(default=0.3, ge=0.0, le=1.0)
    signatures: list[Signature] = []
    evidence: list[str] = []
    target: TargetRule = TargetRule()
    actions: list[ActionStep] = Field(min_length=1)
    verify: Verification
    approval: Approval | None = None
    notify: Notify | None = None
    cooldown: Seconds = 1800.0
    acknowledge: list[Risk] = []
    max_dependents: int | None = Field(default=None, ge=0)
    """Act on a target with more dependents (per the dependency graph) only after approval."""
    storm: StormRule | None = None
    trust: Trust | None = None
    """Earned trust (see :mod:`policies.trust`); omitted, its defaults apply."""
    version: str = ""

    @field_validator("evidence")
    @classmethod
    def _evidence_labels_only_as_matcher_values(cls, value: list[str]) -> list[str]:
        for query in value:
            check_template(query)
        return value

    @model_validator(mode="after")
    def _supervised_needs_approvers(self) -> ReliabilityPolicy:
        if self.mode == Mode.SUPERVISED and self.approval is None:
            raise ValueError("mode 'supervised' needs an 'approval' block with approvers")
        if self.max_dependents is not None and self.approval is None:
            raise ValueError("'max_dependents' needs an 'approval' block: a wider reach waits for approvers")
        check_tier_channels(self.approval, self.notify)
        return self


def _policy_kind(value: Any) -> str:
    """The ``loop`` a policy names; files written before there were several loops omit it."""
    loop = value.get("loop", Loop.RELIABILITY) if isinstance(value, dict) else getattr(value, "loop", None)
    return str(loop)


def _validate_policy(value: Any) -> Any:
    # Validating the chosen model here, not in the union, keeps error locations equal
    # to the YAML path (a tagged union would insert the tag), so file:line stays exact.
    if isinstance(value, ReliabilityPolicy | SecurityPolicy | ResourcePolicy):
        return value
    kind = _policy_kind(value)
    if kind == Loop.RESOURCE:
        return ResourcePolicy.model_validate(value)
    return (SecurityPolicy if kind == Loop.SECURITY else ReliabilityPolicy).model_validate(value)


Policy = Annotated[
    Annotated[ReliabilityPolicy, Tag(Loop.RELIABILITY.value)]
    | Annotated[SecurityPolicy, Tag(Loop.SECURITY.value)]
    | Annotated[ResourcePolicy, Tag(Loop.RESOURCE.value)],
    Discriminator(_policy_kind),
    BeforeValidator(_validate_policy),
]
"""Every policy kind suture knows, told apart by ``loop`` (``reliability`` when omitted)."""


class PolicyFile(PolicyModel):
    policies: list[Policy] = Field(min_length=1)


class PolicyQuery(PolicyModel):
    """Ask the policy store for the policy governing a signal."""

    loop: Loop
    labels: dict[str, str]


class PolicySelection(PolicyModel):
    """The policy pinned for a run, or none when nothing matches."""

    policy: Policy | None
    considered: int
