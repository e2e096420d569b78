"""Security detection and the Containment Scope Index: pure code the security loop replays.

An AWS audit event becomes a *finding*: a signal type, a risk score built from
the evidence (never a yes/no), and the narrowest resources involved. The
Containment Scope Index then says, per signal type, which resource boundary is
the narrowest one and which single action acts exactly there, with its undo.
The loop never reaches past that boundary: it disables one access key, not the
user; revokes one ingress rule, not the group; detaches one policy from one
principal. When no action fits the boundary (temporary credentials of a role
that many workloads share), the plan is to hand a human the dependents instead.

Everything that needs AWS (a credential's baseline, a policy document, a role's
dependents) is read by activities and passed in, so a decision replays
identically in the workflow.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.durations import Seconds
from suture.models import AwsEvent, CredentialActivity, Loop, Mode, PlannedAction, Target

# ``policies.models`` builds its ``Policy`` union from ``SecurityPolicy`` and this
# module uses two of its schema pieces, so they are imported at the bottom: that way
# either module can be imported first. Annotations are resolved lazily.


class SignalType(StrEnum):
    """What kind of security signal an event carries."""

    INGRESS_OPENED = "ingress_opened"
    ACCESS_KEY_ANOMALY = "access_key_anomaly"
    ROLE_CREDENTIAL_ANOMALY = "role_credential_anomaly"
    POLICY_ATTACHED = "policy_attached"
    BUCKET_PUBLIC_ACCESS = "bucket_public_access"


# --- the Containment Scope Index ---------------------------------------------------------


@dataclass(frozen=True)
class ContainmentScope:
    """The narrowest boundary for one signal type and the action that acts exactly there.

    Attributes:
        signal: the signal type this entry governs.
        boundary: the narrowest resource boundary, as a human reads it in a briefing.
        target_kind: ``Target.kind`` of that boundary.
        action: the registered action acting on that boundary; None when none exists.
        broader: what the next available action would reach; the loop refuses it.
    """

    signal: SignalType
    boundary: str
    target_kind: str
    action: str | None
    broader: str


CONTAINMENT_SCOPE_INDEX: dict[SignalType, ContainmentScope] = {
    scope.signal: scope
    for scope in (
        ContainmentScope(
            SignalType.ACCESS_KEY_ANOMALY,
            boundary="the one access key that was used",
            target_kind="access-key",
            action="iam.deactivate_access_key",
            broader="disabling the IAM user or all of its keys",
        ),
        ContainmentScope(
            SignalType.ROLE_CREDENTIAL_ANOMALY,
            boundary="the one role session that was used",
            target_kind="role-session",
            action=None,
            broader="revoking every session of the role, which cuts off every workload using it",
        ),
        ContainmentScope(
            SignalType.INGRESS_OPENED,
            boundary="the one ingress rule (group, protocol, ports, CIDR) that was added",
            target_kind="ingress-rule",
            action="ec2.revoke_ingress",
            broader="emptying or deleting the security group",
        ),
        ContainmentScope(
            SignalType.POLICY_ATTACHED,
            boundary="the one attachment of that policy to that principal",
            target_kind="policy-attachment",
            action="iam.detach_policy",
            broader="deleting the policy or disabling the principal",
        ),
        ContainmentScope(
            SignalType.BUCKET_PUBLIC_ACCESS,
            boundary="the one bucket's public-access block",
            target_kind="bucket-public-access-block",
            action="s3.restore_public_access_block",
            broader="changing the bucket policy or the account-wide block",
        ),
    )
}
"""Per signal type, the narrowest resource boundary and the action allowed there."""


def index_actions(signals: list[SignalType] | None = None) -> set[str]:
    """The actions the index allows for ``signals`` (every signal when empty)."""
    scopes = [CONTAINMENT_SCOPE_INDEX[s] for s in signals] if signals else CONTAINMENT_SCOPE_INDEX.values()
    return {scope.action for scope in scopes if scope.action}


# --- what an action is aimed at ----------------------------------------------------------


class TargetRef(BaseModel):
    """The exact AWS resource an action changes; carried in ``PlannedAction.params['target']``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str


class AccessKeyRef(TargetRef):
    user_name: str
    access_key_id: str


class IngressRuleRef(TargetRef):
    group_id: str
    protocol: str
    from_port: int = -1
    to_port: int = -1
    cidr: str

    @property
    def ipv6(self) -> bool:
        return ":" in self.cidr

    def ip_permission(self, description: str | None = None) -> dict[str, Any]:
        """The rule as one boto3 ``IpPermissions`` item, naming only this CIDR."""
        key, cidr_key = ("Ipv6Ranges", "CidrIpv6") if self.ipv6 else ("IpRanges", "CidrIp")
        cidr: dict[str, str] = {cidr_key: self.cidr}
        if description:
            cidr["Description"] = description
        permission: dict[str, Any] = {"IpProtocol": self.protocol, key: [cidr]}
        if self.protocol not in ("-1", "all"):
            permission.update(FromPort=self.from_port, ToPort=self.to_port)
        return permission


PrincipalKind = Literal["user", "role", "group"]


class PolicyAttachmentRef(TargetRef):
    principal_kind: PrincipalKind
    principal_name: str
    policy_arn: str


class BucketRef(TargetRef):
    bucket: str


RefT = TypeVar("RefT", bound=TargetRef)


def target_ref(action: PlannedAction, model: type[RefT]) -> RefT:
    """The resource ``action`` is aimed at, as ``model``.

    Raises:
        pydantic.ValidationError: the action does not carry a ``model`` reference.
    """
    return model.model_validate(action.params.get("target", {}))


class ScopedTarget(BaseModel):
    """One resource a finding names at the narrowest boundary, with its own risk."""

    model_config = ConfigDict(extra="forbid")

    target: Target
    ref: dict[str, Any]
    risk: float
    reason: str


class Finding(BaseModel):
    """What detection concluded about one event."""

    model_config = ConfigDict(extra="forbid")

    signal: SignalType
    risk: float = Field(ge=0.0, le=1.0)
    summary: str
    reasons: list[str] = []
    targets: list[ScopedTarget] = []


# --- policy schema -----------------------------------------------------------------------

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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SecurityMatch(_Strict):
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


class RiskThresholds(_Strict):
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


class CredentialWeights(_Strict):
    """How much each piece of evidence raises a credential's risk (combined as a noisy-or)."""

    new_source: float = Field(default=0.5, ge=0.0, le=1.0)
    nearby_source: float = Field(default=0.15, ge=0.0, le=1.0)
    new_api: float = Field(default=0.4, ge=0.0, le=1.0)
    sensitive_api: float = Field(default=0.3, ge=0.0, le=1.0)
    new_user_agent: float = Field(default=0.1, ge=0.0, le=1.0)
    denied_call: float = Field(default=0.2, ge=0.0, le=1.0)
    no_baseline: float = Field(default=0.5, ge=0.0, le=1.0)


class Detection(_Strict):
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


class ContainmentVerification(_Strict):
    """Re-read the resource after ``window``; for credentials, calls after containment fail it."""

    window: Seconds = 60.0
    grace: Seconds = 2.0


class SecurityPolicy(_Strict):
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
    cooldown: Seconds = 600.0
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
        return self

    def mode_for(self, risk: float) -> Mode:
        """The authority this policy grants at ``risk``, never more than ``mode``."""
        if risk >= self.risk.act_at:
            return self.mode
        return min(self.mode, self.risk.below_threshold, key=_MODES.index)

    def step_for(self, action: str) -> ActionStep | None:
        return next((step for step in self.actions if step.type == action), None)


# --- detection -----------------------------------------------------------------------------

_POLICY_EVENTS: dict[str, PrincipalKind] = {
    "AttachUserPolicy": "user",
    "AttachRolePolicy": "role",
    "AttachGroupPolicy": "group",
}
_BUCKET_EVENTS = {"DeleteBucketPublicAccessBlock", "PutBucketPublicAccessBlock"}
_BLOCK_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


def signal_of(event: AwsEvent) -> SignalType | None:
    """Which signal an event carries, if any. Resource changes come before credential use."""
    succeeded = not event.error_code
    if event.event_name == "AuthorizeSecurityGroupIngress" and succeeded:
        return SignalType.INGRESS_OPENED
    if event.event_name in _POLICY_EVENTS and succeeded:
        return SignalType.POLICY_ATTACHED
    if event.event_name in _BUCKET_EVENTS and succeeded:
        return SignalType.BUCKET_PUBLIC_ACCESS
    if event.principal.type == "IAMUser" and event.principal.access_key_id:
        return SignalType.ACCESS_KEY_ANOMALY
    if event.principal.type == "AssumedRole" and event.principal.role_arn:
        return SignalType.ROLE_CREDENTIAL_ANOMALY
    return None


def labels_of(event: AwsEvent, signal: SignalType) -> dict[str, str]:
    """The labels ``policy.select`` matches a security policy against."""
    return {
        "signal": str(signal),
        "account": event.account,
        "region": event.region,
        "event_name": event.event_name,
        "event_source": event.event_source,
        "principal_type": event.principal.type,
    }


def needs_baseline(signal: SignalType) -> bool:
    return signal in (SignalType.ACCESS_KEY_ANOMALY, SignalType.ROLE_CREDENTIAL_ANOMALY)


def policy_needing_document(event: AwsEvent, rules: Detection) -> str | None:
    """The attached policy's ARN when only its document can tell whether it is admin-equivalent."""
    arn = str(event.request_parameters.get("policyArn", ""))
    return arn if arn and arn not in rules.admin_policies else None


def assess_ingress(event: AwsEvent, rules: Detection) -> Finding:
    """Score every CIDR the event opened; each one is its own narrowest target."""
    group = _group_id(event)
    targets: list[ScopedTarget] = []
    for permission in _items(event.request_parameters.get("ipPermissions")):
        protocol = str(permission.get("ipProtocol", "-1"))
        from_port, to_port = _ports(permission, protocol)
        cidrs = [r.get("cidrIp") for r in _items(permission.get("ipRanges"))]
        cidrs += [r.get("cidrIpv6") for r in _items(permission.get("ipv6Ranges"))]
        for cidr in filter(None, cidrs):
            risk, why = _cidr_risk(str(cidr), protocol, from_port, to_port, rules)
            ref = IngressRuleRef(
                region=event.region,
                group_id=group,
                protocol=protocol,
                from_port=from_port,
                to_port=to_port,
                cidr=str(cidr),
            )
            name = f"{group}/{protocol}:{from_port}-{to_port}/{cidr}"
            ports = "all traffic" if protocol in ("-1", "all") else f"{protocol} {from_port}-{to_port}"
            targets.append(
                ScopedTarget(
                    target=Target(kind="ingress-rule", scope=event.account, name=name),
                    ref=ref.model_dump(),
                    risk=risk,
                    reason=f"{ports} from {cidr}: {why}",
                )
            )
    return Finding(
        signal=SignalType.INGRESS_OPENED,
        risk=max((t.risk for t in targets), default=0.0),
        summary=f"ingress opened on {group or 'a group the event does not name'}",
        reasons=[t.reason for t in targets] or ["the event adds no CIDR rule"],
        # Without the group's id no rule can be named exactly, so the plan escalates.
        targets=targets if group else [],
    )


def assess_credential(event: AwsEvent, rules: Detection, baseline: CredentialActivity) -> Finding:
    """Score a credential's call against what it did during its baseline window."""
    weights = rules.credential
    factors: list[tuple[float, str]] = []
    if baseline.calls == 0:
        factors.append((weights.no_baseline, "no calls with this credential in its baseline window"))
    else:
        factors += _source_factors(event.source_ip, baseline.source_ips, weights)
        if event.event_name not in baseline.event_names:
            factors.append((weights.new_api, f"{event.event_name} was never called in the baseline window"))
        if event.user_agent and event.user_agent not in baseline.user_agents:
            factors.append((weights.new_user_agent, f"user agent {event.user_agent!r} never seen"))
    if event.event_name in rules.sensitive_apis:
        factors.append((weights.sensitive_api, f"{event.event_name} is a reconnaissance or persistence API"))
    if event.error_code:
        factors.append((weights.denied_call, f"the call failed with {event.error_code}"))
    risk = _noisy_or(weight for weight, _ in factors)
    principal, source = event.principal, event.source_ip or "an unknown source"
    if principal.type == "AssumedRole":
        return Finding(
            signal=SignalType.ROLE_CREDENTIAL_ANOMALY,
            risk=risk,
            summary=f"{event.event_name} by a session of {principal.role_arn} from {source}",
            reasons=[reason for _, reason in factors] or ["the call matches the role's baseline"],
        )
    targets = []
    # Only long-term keys (AKIA…) can be disabled one by one; session keys expire on their own.
    if principal.access_key_id.startswith("AKIA") and principal.user_name:
        ref = AccessKeyRef(
            region=event.region, user_name=principal.user_name, access_key_id=principal.access_key_id
        )
        targets.append(
            ScopedTarget(
                target=Target(
                    kind="access-key",
                    scope=event.account,
                    name=f"{principal.user_name}/{principal.access_key_id}",
                ),
                ref=ref.model_dump(),
                risk=risk,
                reason=f"access key {principal.access_key_id} of {principal.user_name}",
            )
        )
    return Finding(
        signal=SignalType.ACCESS_KEY_ANOMALY,
        risk=risk,
        summary=f"{event.event_name} with key {principal.access_key_id} from {source}",
        reasons=[reason for _, reason in factors] or ["the call matches the key's baseline"],
        targets=targets,
    )


def assess_policy_attachment(event: AwsEvent, rules: Detection, document: dict[str, Any] | None) -> Finding:
    """An attachment is risky when the policy is administrator-equivalent."""
    kind = _POLICY_EVENTS[event.event_name]
    principal = str(event.request_parameters.get(f"{kind}Name", ""))
    arn = str(event.request_parameters.get("policyArn", ""))
    if arn in rules.admin_policies:
        risk, why = rules.admin_risk, f"{arn} is administrator-equivalent"
    elif document is not None and is_admin_equivalent(document):
        risk, why = rules.admin_risk, f"{arn} allows every action on every resource (or all of IAM)"
    else:
        risk, why = 0.0, f"{arn} grants no administrator-equivalent permission"
    targets = []
    if principal and arn:
        ref = PolicyAttachmentRef(
            region=event.region, principal_kind=kind, principal_name=principal, policy_arn=arn
        )
        target = Target(
            kind="policy-attachment", scope=event.account, name=f"{kind}/{principal}/{arn.rpartition('/')[2]}"
        )
        targets.append(ScopedTarget(target=target, ref=ref.model_dump(), risk=risk, reason=why))
    return Finding(
        signal=SignalType.POLICY_ATTACHED,
        risk=risk,
        summary=f"{arn or 'a policy'} attached to {kind} {principal or '?'}",
        reasons=[why],
        targets=targets,
    )


def assess_bucket(event: AwsEvent, rules: Detection) -> Finding:
    """A bucket whose public-access block was removed or weakened."""
    bucket = str(event.request_parameters.get("bucketName", ""))
    if event.event_name == "DeleteBucketPublicAccessBlock":
        weakened, what = True, "its public-access block was removed"
    else:
        config = event.request_parameters.get("PublicAccessBlockConfiguration") or {}
        off = [flag for flag in _BLOCK_FLAGS if str(config.get(flag, "false")).lower() != "true"]
        weakened, what = bool(off), (f"{', '.join(off)} turned off" if off else "every block flag is on")
    if bucket in rules.public_buckets:
        risk, why = 0.0, f"{bucket} is listed as meant to be public"
    else:
        risk, why = (rules.public_bucket_risk if weakened else 0.0), f"bucket {bucket}: {what}"
    targets = []
    if bucket:
        ref = BucketRef(region=event.region, bucket=bucket)
        target = Target(kind="bucket-public-access-block", scope=event.account, name=bucket)
        targets.append(ScopedTarget(target=target, ref=ref.model_dump(), risk=risk, reason=why))
    return Finding(
        signal=SignalType.BUCKET_PUBLIC_ACCESS,
        risk=risk,
        summary=f"public-access block of {bucket or 'a bucket'} changed",
        reasons=[why],
        targets=targets,
    )


def is_admin_equivalent(document: dict[str, Any]) -> bool:
    """True when a statement allows ``*`` or ``iam:*`` on every resource."""
    for statement in _as_list(document.get("Statement")):
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        actions = {str(a).lower() for a in _as_list(statement.get("Action"))}
        resources = {str(r) for r in _as_list(statement.get("Resource"))}
        if actions & {"*", "iam:*"} and "*" in resources:
            return True
    return False


# --- decision --------------------------------------------------------------------------------


class ContainmentPlan(BaseModel):
    """What the loop will do about a finding, and why.

    ``outcome`` is ``act`` (``actions`` set), ``suppressed`` (too little risk),
    ``dry_run`` (the policy only observes) or ``escalate`` (no action fits the
    narrowest boundary).
    """

    model_config = ConfigDict(extra="forbid")

    outcome: Literal["act", "suppressed", "dry_run", "escalate"]
    mode: Mode | None
    reason: str
    actions: list[PlannedAction] = []
    would_have_done: list[str] = []


def plan_containment(policy: SecurityPolicy, finding: Finding, incident_key: str) -> ContainmentPlan:
    """Turn a finding into a plan under ``policy``; never beyond the index's boundary."""
    scope = CONTAINMENT_SCOPE_INDEX[finding.signal]
    if finding.risk < policy.risk.ignore_below:
        return ContainmentPlan(
            outcome="suppressed",
            mode=None,
            reason=(
                f"risk {finding.risk:.2f} is below {policy.risk.ignore_below:.2f}: {finding.summary} "
                f"({'; '.join(finding.reasons)})"
            ),
        )
    mode = policy.mode_for(finding.risk)
    step = policy.step_for(scope.action) if scope.action else None
    if step is None or not finding.targets:
        why = (
            f"no action acts on {scope.boundary}; the next one available means {scope.broader}"
            if scope.action is None or not finding.targets
            else f"policy {policy.name} does not permit {scope.action}"
        )
        return ContainmentPlan(
            outcome="escalate",
            mode=mode,
            reason=f"risk {finding.risk:.2f} ({finding.summary}) but {why}",
            would_have_done=[f"refused: {scope.broader}"],
        )
    targets = [t for t in finding.targets if t.risk >= policy.risk.ignore_below]
    actions = [
        PlannedAction(
            type=step.type,
            target=t.target,
            params={**step.params, "target": t.ref},
            mode=mode,
            idempotency_key=f"{incident_key}:{step.type}:{t.target}",
        )
        for t in targets
    ]
    would = [f"{a.type} on {a.target} ({t.reason})" for a, t in zip(actions, targets, strict=True)]
    reason = f"risk {finding.risk:.2f}: {finding.summary}; contain {scope.boundary}"
    if mode in (Mode.OBSERVE, Mode.DRY_RUN):
        return ContainmentPlan(
            outcome="dry_run", mode=mode, reason=f"policy mode is {mode}; {reason}", would_have_done=would
        )
    return ContainmentPlan(outcome="act", mode=mode, reason=reason, actions=actions, would_have_done=would)


# --- helpers -----------------------------------------------------------------------------------


def _items(value: Any) -> list[dict[str, Any]]:
    """CloudTrail wraps EC2 lists as ``{"items": [...]}``; accept a bare list too."""
    if isinstance(value, dict):
        value = value.get("items", [])
    return [item for item in value or [] if isinstance(item, dict)]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _group_id(event: AwsEvent) -> str:
    group = event.request_parameters.get("groupId")
    if not group:
        rules = _items(event.response_elements.get("securityGroupRuleSet"))
        group = next((rule.get("groupId") for rule in rules if rule.get("groupId")), "")
    return str(group or "")


def _ports(permission: dict[str, Any], protocol: str) -> tuple[int, int]:
    if protocol in ("-1", "all"):
        return -1, -1
    return int(permission.get("fromPort", -1)), int(permission.get("toPort", -1))


def _cidr_risk(cidr: str, protocol: str, from_port: int, to_port: int, rules: Detection) -> tuple[float, str]:
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return rules.public_sensitive_risk, f"{cidr} is not a network this loop understands"
    all_ports = protocol in ("-1", "all") or (from_port <= 0 and to_port >= 65535)
    sensitive = sorted(p for p in rules.sensitive_ports if all_ports or from_port <= p <= to_port)
    exposed = "every port" if all_ports else (f"sensitive port {sensitive[0]}" if sensitive else "")
    if network.prefixlen == 0:
        if exposed:
            return rules.world_sensitive_risk, f"{exposed} open to the whole internet"
        return rules.world_other_risk, "open to the internet on a port not listed as sensitive"
    if not network.is_global:
        return 0.0, "a private range"
    if exposed:
        return rules.public_sensitive_risk, f"{exposed} open to a public range"
    return 0.0, "a public range on a port not listed as sensitive"


def _source_factors(ip: str, known: list[str], weights: CredentialWeights) -> list[tuple[float, str]]:
    if not ip or ip in known:
        return []
    if any(_same_slash24(ip, other) for other in known):
        return [(weights.nearby_source, f"source {ip} is new but next to a known one")]
    sample = ", ".join(known[:3]) + ("…" if len(known) > 3 else "")
    return [(weights.new_source, f"source {ip} is outside the baseline ({sample or 'none'})")]


def _same_slash24(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(b) in ipaddress.ip_network(f"{a}/24", strict=False)
    except ValueError:  # an AWS service name or a v6/v4 mix
        return False


def _noisy_or(weights: Any) -> float:
    """Independent pieces of evidence: each one removes its share of the doubt left."""
    doubt = 1.0
    for weight in weights:
        doubt *= 1.0 - weight
    return round(1.0 - doubt, 4)


from policies.models import ActionStep, Approval  # noqa: E402  (see the note at the top)

SecurityPolicy.model_rebuild()
