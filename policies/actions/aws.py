"""The security loop's containment actions and AWS reads, declared; ``activities/aws.py`` implements them.

Each action acts on exactly one boundary of the Containment Scope Index, and is
verified by re-reading the resource it changed (for a key, also by looking in the
trail for calls that still succeed). The IAM actions listed here are the only
place suture's AWS permissions are written: the activities name them when AWS
refuses a call, and ``suture permissions --iam`` prints them as a policy.
"""

# mypy: disable-error-code="empty-body"
# The activity signatures below are declarations; their bodies never run.

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from policies.actions.declaration import (
    ActionParams,
    ActionSpec,
    NoParams,
    Permissions,
    UndoState,
    declare,
    register,
)
from suture.models import (
    ActionOutcome,
    ContainmentCheck,
    CredentialActivity,
    CredentialQuery,
    HealthReport,
    Loop,
    PlannedAction,
    PolicyDocument,
    PolicyDocumentRequest,
    RoleDependents,
    RoleDependentsRequest,
    Snapshot,
)

TRAIL_READ = Permissions(iam=("logs:FilterLogEvents",))
"""Reading the CloudTrail records the trail delivers to CloudWatch Logs."""

PAGING = timedelta(seconds=30)
"""Heartbeat interval of activities that page through the trail: one page takes seconds."""


# --- reads for detection -------------------------------------------------------------------


@declare(
    "aws.credential_activity",
    timeout=timedelta(minutes=5),
    heartbeat=PAGING,
    permissions=TRAIL_READ,
    loop=Loop.SECURITY,
)
def credential_activity(query: CredentialQuery) -> CredentialActivity: ...


@declare(
    "aws.policy_document",
    timeout=timedelta(seconds=20),
    permissions=Permissions(iam=("iam:GetPolicy", "iam:GetPolicyVersion")),
    loop=Loop.SECURITY,
)
def policy_document(request: PolicyDocumentRequest) -> PolicyDocument: ...


@declare(
    "aws.role_dependents",
    timeout=timedelta(seconds=60),
    permissions=Permissions(
        iam=(
            "iam:ListInstanceProfilesForRole",
            "ec2:DescribeIamInstanceProfileAssociations",
            "ec2:DescribeInstances",
            "lambda:ListFunctions",
        )
    ),
    loop=Loop.SECURITY,
)
def role_dependents(request: RoleDependentsRequest) -> RoleDependents: ...


@declare("aws.verify_containment", timeout=timedelta(minutes=5), heartbeat=PAGING)
def verify_containment(check: ContainmentCheck) -> HealthReport:
    """Any action's verification, by type: what runs started before per-action verification call."""
    ...


# --- iam.deactivate_access_key --------------------------------------------------------------


class AccessKeyState(UndoState):
    status: Literal["Active", "Inactive"]


@declare("iam.snapshot_access_key", timeout=timedelta(seconds=20))
def snapshot_access_key(action: PlannedAction) -> Snapshot: ...


@declare("iam.deactivate_access_key", timeout=timedelta(seconds=20))
def deactivate_access_key(snapshot: Snapshot) -> ActionOutcome: ...


@declare("iam.reactivate_access_key", timeout=timedelta(seconds=20))
def reactivate_access_key(snapshot: Snapshot) -> ActionOutcome: ...


@declare("iam.verify_access_key_disabled", timeout=timedelta(minutes=5), heartbeat=PAGING)
def verify_access_key_disabled(check: ContainmentCheck) -> HealthReport: ...


DEACTIVATE_ACCESS_KEY = register(
    ActionSpec(
        name="iam.deactivate_access_key",
        loop=Loop.SECURITY,
        summary="set one IAM access key Inactive; the user and its other keys stay as they are",
        params=NoParams,
        state=AccessKeyState,
        prepare=snapshot_access_key,
        do=deactivate_access_key,
        undo=reactivate_access_key,
        verify=verify_access_key_disabled,
        permissions=Permissions(iam=("iam:ListAccessKeys", "iam:UpdateAccessKey")) | TRAIL_READ,
        max_targets=1,
        blast_radius="one access key; whatever signs requests with that key stops working",
        example="actions:\n  - type: iam.deactivate_access_key\n",
    )
)


# --- ec2.revoke_ingress -------------------------------------------------------------------------


class IngressState(UndoState):
    present: bool
    """Whether the rule existed when captured; an undo never adds a rule that was not there."""
    rule_id: str = ""
    description: str = ""


@declare("ec2.snapshot_ingress", timeout=timedelta(seconds=20))
def snapshot_ingress(action: PlannedAction) -> Snapshot: ...


@declare("ec2.revoke_ingress", timeout=timedelta(seconds=20))
def revoke_ingress(snapshot: Snapshot) -> ActionOutcome: ...


@declare("ec2.authorize_ingress", timeout=timedelta(seconds=20))
def authorize_ingress(snapshot: Snapshot) -> ActionOutcome: ...


@declare("ec2.verify_ingress_revoked", timeout=timedelta(seconds=20))
def verify_ingress_revoked(check: ContainmentCheck) -> HealthReport: ...


REVOKE_INGRESS = register(
    ActionSpec(
        name="ec2.revoke_ingress",
        loop=Loop.SECURITY,
        summary="revoke one ingress rule (protocol, ports, CIDR); the group's other rules remain",
        params=NoParams,
        state=IngressState,
        prepare=snapshot_ingress,
        do=revoke_ingress,
        undo=authorize_ingress,
        verify=verify_ingress_revoked,
        permissions=Permissions(
            iam=(
                "ec2:DescribeSecurityGroupRules",
                "ec2:RevokeSecurityGroupIngress",
                "ec2:AuthorizeSecurityGroupIngress",
            )
        ),
        # One AuthorizeSecurityGroupIngress call can open several rules (ports, IPv4 and IPv6).
        max_targets=8,
        blast_radius="one CIDR on one port range of one security group",
        example="actions:\n  - type: ec2.revoke_ingress\n",
    )
)


# --- iam.detach_policy ---------------------------------------------------------------------------


class PolicyAttachmentState(UndoState):
    attached: bool


@declare("iam.snapshot_policy_attachment", timeout=timedelta(seconds=20))
def snapshot_policy_attachment(action: PlannedAction) -> Snapshot: ...


@declare("iam.detach_policy", timeout=timedelta(seconds=20))
def detach_policy(snapshot: Snapshot) -> ActionOutcome: ...


@declare("iam.attach_policy", timeout=timedelta(seconds=20))
def attach_policy(snapshot: Snapshot) -> ActionOutcome: ...


@declare("iam.verify_policy_detached", timeout=timedelta(seconds=20))
def verify_policy_detached(check: ContainmentCheck) -> HealthReport: ...


DETACH_POLICY = register(
    ActionSpec(
        name="iam.detach_policy",
        loop=Loop.SECURITY,
        summary="detach one managed policy from one user, role or group",
        params=NoParams,
        state=PolicyAttachmentState,
        prepare=snapshot_policy_attachment,
        do=detach_policy,
        undo=attach_policy,
        verify=verify_policy_detached,
        permissions=Permissions(
            iam=tuple(
                f"iam:{verb}{kind}{noun}"
                for verb, noun in (("ListAttached", "Policies"), ("Detach", "Policy"), ("Attach", "Policy"))
                for kind in ("User", "Role", "Group")
            )
        ),
        max_targets=1,
        blast_radius="the permissions that one policy gave one principal",
        example="actions:\n  - type: iam.detach_policy\n",
    )
)


# --- s3.restore_public_access_block -------------------------------------------------------------


class PublicAccessBlockParams(ActionParams):
    block_public_acls: bool = True
    ignore_public_acls: bool = True
    block_public_policy: bool = True
    restrict_public_buckets: bool = True


class PublicAccessBlockState(UndoState):
    configuration: dict[str, bool] | None
    """The bucket's block as AWS names its settings; None when it had none."""


@declare("s3.snapshot_public_access_block", timeout=timedelta(seconds=20))
def snapshot_public_access_block(action: PlannedAction) -> Snapshot: ...


@declare("s3.restore_public_access_block", timeout=timedelta(seconds=20))
def restore_public_access_block(snapshot: Snapshot) -> ActionOutcome: ...


@declare("s3.remove_public_access_block", timeout=timedelta(seconds=20))
def remove_public_access_block(snapshot: Snapshot) -> ActionOutcome: ...


@declare("s3.verify_public_access_block", timeout=timedelta(seconds=20))
def verify_public_access_block(check: ContainmentCheck) -> HealthReport: ...


RESTORE_PUBLIC_ACCESS_BLOCK = register(
    ActionSpec(
        name="s3.restore_public_access_block",
        loop=Loop.SECURITY,
        summary="put the bucket's public-access block back (all four settings on by default)",
        params=PublicAccessBlockParams,
        state=PublicAccessBlockState,
        prepare=snapshot_public_access_block,
        do=restore_public_access_block,
        undo=remove_public_access_block,
        verify=verify_public_access_block,
        permissions=Permissions(iam=("s3:GetBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock")),
        max_targets=1,
        blast_radius="public (anonymous) access to one bucket; access by IAM principals is unchanged",
        example=(
            "actions:\n  - type: s3.restore_public_access_block\n"
            "    params: {block_public_acls: true, restrict_public_buckets: true}\n"
        ),
    )
)
