"""What a security action is aimed at: the exact AWS resource, as a typed reference.

A plan carries the reference in ``PlannedAction.params['target']``; the activity
that acts reads it back with :func:`target_ref`, so both sides agree on its shape.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from suture.models import PlannedAction


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
