"""The security policy schema: which accounts and signals, what authority, which containment.

The detection knobs live in the policy (``detection:``) so a team tunes its own
thresholds without code; their defaults are the shipped rules. A policy may only
permit the actions the Containment Scope Index allows for the signals it matches.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from policies.durations import Seconds
from policies.schema import ActionStep, Approval, Notify, PolicyModel, Risk, check_tier_channels
from policies.scope import SignalType, index_actions
from policies.trust import Trust
from suture.models import Loop, Mode

_MODES = [Mode.OBSERVE, Mode.DRY_RUN, Mode.SUPERVISED, Mode.AUTONOMOUS]

SENSITIVE_PORTS = [
    22,
    23,
    135,
    139,
    445,
    1433,
    1521,
    2375,
    2379,
    3306,
    3389,
    5432,
    5900,
    6379,
    9200,
    11211,
    27017,
]
RECON_AND_PERSISTENCE_APIS = [
    "GetCallerIdentity",
    "ListBuckets",
    "ListUsers",
    "ListRoles",
    "ListAccessKeys",
    "GetAccountAuthorizationDetails",
    "CreateUser",
    "CreateAccessKey",
    "CreateLoginProfile",
    "UpdateLoginProfile",
    "AttachUserPolicy",
    "PutUserPolicy",
    "AttachRolePolicy",
    "PutRolePolicy",
    "UpdateAssumeRolePolicy",
    "GetSecretValue",
    "StopLogging",
    "DeleteTrail",
    "PutBucketPolicy",
    "DeleteBucketPublicAccessBlock",
]
ADMIN_POLICIES = ["arn:aws:iam::aws:policy/AdministratorAccess", "arn:aws:iam::aws:policy/IAMFullAccess"]


class SecurityMatch(PolicyModel):
    """Which events a security policy governs. An event of an account not listed is ignored."""

    accounts: list[str] = Field(min_length=1)
    regions: list[str] = []
    signals: list[SignalType] = []

    @field_validator("accounts")
    @classmethod
    def _account_ids(cls, value: list[str]) -> list[str]:
        for account in value:
            if account != "*" and not (len(account) == 12 and account.isdigit()):
                raise ValueError(f"{account!r} is not a 12-digit AWS account id (or '*')")
        return value

    def accepts(self, labels: dict[str, str]) -> bool:
        account, region, signal = labels.get("account"), labels.get("region"), labels.get("signal")
        return (
            ("*" in self.accounts or account in self.accounts)
            and (not self.regions or region in self.regions)
            and (not self.signals or signal in self.signals)
        )


class RiskThresholds(PolicyModel):
    """Where the risk score changes what the loop may do.

    Below ``ignore_below`` an event is recorded and suppressed; from ``act_at`` on the
    policy's ``mode`` applies; in between, ``below_threshold`` (normally supervised).
    """

    act_at: float = Field(default=0.7, ge=0.0, le=1.0)
    ignore_below: float = Field(default=0.3, ge=0.0, le=1.0)
    below_threshold: Mode = Mode.SUPERVISED

    @model_validator(mode="after")
    def _ordered(self) -> RiskThresholds:
        if self.ignore_below > self.act_at:
            raise ValueError("ignore_below must not exceed act_at")
        return self


class CredentialWeights(PolicyModel):
    """How much each piece of evidence raises a credential's risk (combined as a noisy-or)."""

    new_source: float = Field(default=0.5, ge=0.0, le=1.0)
    nearby_source: float = Field(default=0.15, ge=0.0, le=1.0)
    new_api: float = Field(default=0.4, ge=0.0, le=1.0)
    sensitive_api: float = Field(default=0.3, ge=0.0, le=1.0)
    new_user_agent: float = Field(default=0.1, ge=0.0, le=1.0)
    denied_call: float = Field(default=0.2, ge=0.0, le=1.0)
    no_baseline: float = Field(default=0.5, ge=0.0, le=1.0)


class Detection(PolicyModel):
    """The knobs of the detection rules; the defaults are the shipped rules."""

    sensitive_ports: list[int] = SENSITIVE_PORTS
    world_sensitive_risk: float = Field(default=0.95, ge=0.0, le=1.0)
    world_other_risk: float = Field(default=0.2, ge=0.0, le=1.0)
    public_sensitive_risk: float = Field(default=0.5, ge=0.0, le=1.0)
    baseline: Seconds = 14 * 86400.0
    baseline_gap: Seconds = 3600.0
    """The baseline ends this long before the event, so an intruder's first calls stay out of it."""
    sensitive_apis: list[str] = RECON_AND_PERSISTENCE_APIS
    credential: CredentialWeights = CredentialWeights()
    admin_policies: list[str] = ADMIN_POLICIES
    admin_risk: float = Field(default=0.95, ge=0.0, le=1.0)
    public_bucket_risk: float = Field(default=0.9, ge=0.0, le=1.0)
    public_buckets: list[str] = []
    """Buckets meant to be public (static sites): removing their block is not a finding."""


class ContainmentVerification(PolicyModel):
    """Re-read the resource after ``window``; for credentials, calls after containment fail it."""

    window: Seconds = 60.0
    grace: Seconds = 2.0


class SecurityPolicy(PolicyModel):
    """A security policy: which accounts and signals, what authority, which containment.

    ``actions`` lists the containment actions the policy permits. Each must be the
    Containment Scope Index's action for one of the signals it matches, so a
    policy can narrow what the loop does but never widen its scope. A policy
    without actions only records, suppresses and escalates.
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    loop: Literal[Loop.SECURITY] = Loop.SECURITY
    description: str = ""
    match: SecurityMatch
    mode: Mode
    risk: RiskThresholds = RiskThresholds()
    detection: Detection = Detection()
    actions: list[ActionStep] = []
    verify: ContainmentVerification = ContainmentVerification()
    approval: Approval | None = None
    notify: Notify | None = None
    cooldown: Seconds = 600.0
    acknowledge: list[Risk] = []
    trust: Trust | None = None
    """Earned trust (see :mod:`policies.trust`); omitted, its defaults apply."""
    version: str = ""

    @model_validator(mode="after")
    def _within_the_index(self) -> SecurityPolicy:
        allowed = index_actions(self.match.signals)
        for step in self.actions:
            if step.type not in allowed:
                raise ValueError(
                    f"action {step.type!r} is not what the Containment Scope Index allows for "
                    f"{', '.join(self.match.signals) or 'any signal'} (allowed: {', '.join(sorted(allowed))})"
                )
        return self

    @model_validator(mode="after")
    def _supervised_needs_approvers(self) -> SecurityPolicy:
        if Mode.SUPERVISED in (self.mode, self.mode_for(self.risk.ignore_below)) and self.approval is None:
            raise ValueError("a policy that can be supervised needs an 'approval' block with approvers")
        check_tier_channels(self.approval, self.notify)
        return self

    def mode_for(self, risk: float) -> Mode:
        """The authority this policy grants at ``risk``, never more than ``mode``."""
        if risk >= self.risk.act_at:
            return self.mode
        return min(self.mode, self.risk.below_threshold, key=_MODES.index)

    def step_for(self, action: str) -> ActionStep | None:
        return next((step for step in self.actions if step.type == action), None)
