"""Security detection: an AWS audit event becomes a finding with a risk score.

A *finding* is a signal type, a risk score built from the evidence (never a
yes/no) and the narrowest resources involved, each with its own risk. Everything
that needs AWS (a credential's baseline, a policy document) is read by
activities and passed in, so detection replays identically in the workflow.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from policies.scope import SignalType
from policies.security_policy import CredentialWeights, Detection
from policies.targets import AccessKeyRef, BucketRef, IngressRuleRef, PolicyAttachmentRef, PrincipalKind
from suture.models import AwsEvent, CredentialActivity, Target


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
