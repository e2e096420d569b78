"""The Containment Scope Index: per security signal, the narrowest boundary and its one action.

The loop never reaches past that boundary: it disables one access key, not the
user; revokes one ingress rule, not the group; detaches one policy from one
principal. When no action fits the boundary (temporary credentials of a role
that many workloads share) the entry names no action, and the plan is to hand a
human the dependents instead. Policies may narrow what the index allows, never
widen it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SignalType(StrEnum):
    """What kind of security signal an event carries."""

    INGRESS_OPENED = "ingress_opened"
    ACCESS_KEY_ANOMALY = "access_key_anomaly"
    ROLE_CREDENTIAL_ANOMALY = "role_credential_anomaly"
    POLICY_ATTACHED = "policy_attached"
    BUCKET_PUBLIC_ACCESS = "bucket_public_access"


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
