"""The actions suture knows, keyed by name.

Each action declares the activities that capture its undo state, carry it out and
undo it, the parameters it accepts (unknown keys refused), the permissions it
needs, its blast radius and a YAML example. A policy may only name actions found
here, and the registry meta-test fails on an entry that lacks any of these.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from suture.models import Loop


class ActionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoParams(ActionParams):
    pass


class ScaleParams(ActionParams):
    by: int = Field(default=1, ge=1, description="replicas to add")
    max_replicas: int = Field(default=10, ge=1, description="never scale beyond this")


@dataclass(frozen=True)
class ActionSpec:
    """One registered action.

    Attributes:
        name: registry key used in policies, e.g. ``k8s.rollback``.
        loop: the loop allowed to use it.
        summary: one line a human reads in a briefing.
        prepare: activity that captures the state the undo restores.
        do: activity that carries the action out.
        undo: activity that restores the captured state.
        params: pydantic model of the accepted parameters.
        permissions: what the worker's identity needs.
        blast_radius: what the action can affect at most.
        example: a policy snippet using the action.
    """

    name: str
    loop: Loop
    summary: str
    prepare: str
    do: str
    undo: str
    params: type[ActionParams]
    permissions: tuple[str, ...]
    blast_radius: str
    example: str


_REGISTRY: dict[str, ActionSpec] = {}


def register(spec: ActionSpec) -> ActionSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"action {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def action_spec(name: str) -> ActionSpec:
    """Return the registered action called ``name``.

    Raises:
        KeyError: with the list of known actions when ``name`` is not registered.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown action {name!r}; known actions: {known}") from None


def registered_actions() -> list[ActionSpec]:
    return sorted(_REGISTRY.values(), key=lambda spec: spec.name)


register(
    ActionSpec(
        name="k8s.rollback",
        loop=Loop.RELIABILITY,
        summary="roll the Deployment back to its previous ReplicaSet's pod template",
        prepare="k8s.snapshot_deployment",
        do="k8s.rollback_deployment",
        undo="k8s.restore_deployment",
        params=NoParams,
        permissions=(
            "apps/deployments: get, patch",
            "apps/replicasets: list",
        ),
        blast_radius="one Deployment; its pods are replaced by a rolling update",
        example="actions:\n  - type: k8s.rollback\n",
    )
)
register(
    ActionSpec(
        name="k8s.restart",
        loop=Loop.RELIABILITY,
        summary="rolling restart of the Deployment (kubectl rollout restart)",
        prepare="k8s.snapshot_deployment",
        do="k8s.restart_deployment",
        undo="k8s.restore_deployment",
        params=NoParams,
        permissions=("apps/deployments: get, patch",),
        blast_radius="one Deployment; pods replaced one by one, no spec change",
        example="actions:\n  - type: k8s.restart\n",
    )
)
register(
    ActionSpec(
        name="k8s.scale",
        loop=Loop.RELIABILITY,
        summary="scale the Deployment out by a few replicas, capped",
        prepare="k8s.snapshot_deployment",
        do="k8s.scale_deployment",
        undo="k8s.restore_deployment",
        params=ScaleParams,
        permissions=("apps/deployments/scale: get, patch", "apps/deployments: get, patch"),
        blast_radius="one Deployment; adds at most max_replicas - current pods",
        example="actions:\n  - type: k8s.scale\n    params: {by: 2, max_replicas: 6}\n",
    )
)


# --- security containment: each acts on exactly one boundary of the Containment Scope Index


class PublicAccessBlockParams(ActionParams):
    block_public_acls: bool = True
    ignore_public_acls: bool = True
    block_public_policy: bool = True
    restrict_public_buckets: bool = True


register(
    ActionSpec(
        name="iam.deactivate_access_key",
        loop=Loop.SECURITY,
        summary="set one IAM access key Inactive; the user and its other keys stay as they are",
        prepare="iam.snapshot_access_key",
        do="iam.deactivate_access_key",
        undo="iam.reactivate_access_key",
        params=NoParams,
        permissions=("iam:ListAccessKeys", "iam:UpdateAccessKey"),
        blast_radius="one access key; whatever signs requests with that key stops working",
        example="actions:\n  - type: iam.deactivate_access_key\n",
    )
)
register(
    ActionSpec(
        name="ec2.revoke_ingress",
        loop=Loop.SECURITY,
        summary="revoke one ingress rule (protocol, ports, CIDR); the group's other rules remain",
        prepare="ec2.snapshot_ingress",
        do="ec2.revoke_ingress",
        undo="ec2.authorize_ingress",
        params=NoParams,
        permissions=(
            "ec2:DescribeSecurityGroupRules",
            "ec2:RevokeSecurityGroupIngress",
            "ec2:AuthorizeSecurityGroupIngress",
        ),
        blast_radius="one CIDR on one port range of one security group",
        example="actions:\n  - type: ec2.revoke_ingress\n",
    )
)
register(
    ActionSpec(
        name="iam.detach_policy",
        loop=Loop.SECURITY,
        summary="detach one managed policy from one user, role or group",
        prepare="iam.snapshot_policy_attachment",
        do="iam.detach_policy",
        undo="iam.attach_policy",
        params=NoParams,
        permissions=(
            "iam:ListAttached{User,Role,Group}Policies",
            "iam:Detach{User,Role,Group}Policy",
            "iam:Attach{User,Role,Group}Policy",
        ),
        blast_radius="the permissions that one policy gave one principal",
        example="actions:\n  - type: iam.detach_policy\n",
    )
)
register(
    ActionSpec(
        name="s3.restore_public_access_block",
        loop=Loop.SECURITY,
        summary="put the bucket's public-access block back (all four settings on by default)",
        prepare="s3.snapshot_public_access_block",
        do="s3.restore_public_access_block",
        undo="s3.remove_public_access_block",
        params=PublicAccessBlockParams,
        permissions=("s3:GetBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock"),
        blast_radius="public (anonymous) access to one bucket; access by IAM principals is unchanged",
        example=(
            "actions:\n  - type: s3.restore_public_access_block\n"
            "    params: {block_public_acls: true, restrict_public_buckets: true}\n"
        ),
    )
)
