"""The resource loop's actions, declared; ``activities/reclaim.py`` implements them.

Each reclaims money one resource at a time and is verified by re-reading that
resource over the verification window: an instance that is running again, or a
Deployment someone resized since, means the change did not hold.
"""

# mypy: disable-error-code="empty-body"
from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from policies.actions.declaration import (
    ActionParams,
    ActionSpec,
    Permissions,
    RbacRule,
    UndoState,
    declare,
    register,
)
from suture.fleet import FleetAnalysis, FleetQuery, ResourceCheck
from suture.models import ActionOutcome, HealthReport, Loop, PlannedAction, Snapshot

READ_FLEET = Permissions(
    iam=("ec2:DescribeInstances",),
    rbac=(RbacRule(("apps",), ("deployments",), ("list",)),),
)
SIZE_DEPLOYMENT = Permissions(
    rbac=(
        RbacRule(("apps",), ("deployments",), ("get", "patch")),
        RbacRule(("apps",), ("deployments/scale",), ("patch",)),
    )
)


class StopInstanceParams(ActionParams):
    region: str = Field(default="", description="the instance's region; the sweep fills it in")


class SetReplicasParams(ActionParams):
    replicas: int = Field(default=0, ge=0, description="replicas to run; 0 parks a non-production Deployment")


class ContainerSize(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_cores: float = Field(gt=0)
    memory_gib: float = Field(gt=0)

    def quantities(self) -> dict[str, str]:
        return {"cpu": f"{round(self.cpu_cores * 1000)}m", "memory": f"{round(self.memory_gib * 1024)}Mi"}


class RightSizeParams(ActionParams):
    requests: dict[str, ContainerSize] = Field(
        default={},
        description="container name → new requests; the sweep computes them from the 95th percentile",
    )


class InstanceState(UndoState):
    region: str
    state: str
    instance_type: str


class DeploymentSizing(UndoState):
    replicas: int
    requests: dict[str, dict[str, str]]
    """Container name → its requests as the API served them."""


# --- activities -----------------------------------------------------------------------------


@declare(
    "resource.analyse_fleet",
    timeout=timedelta(minutes=5),
    heartbeat=timedelta(minutes=2),
    permissions=READ_FLEET,
    loop=Loop.RESOURCE,
)
def analyse_fleet(query: FleetQuery) -> FleetAnalysis: ...


@declare("ec2.snapshot_instance", timeout=timedelta(seconds=20))
def snapshot_instance(action: PlannedAction) -> Snapshot: ...


@declare("ec2.stop_instance", timeout=timedelta(seconds=30))
def stop_instance(snapshot: Snapshot) -> ActionOutcome: ...


@declare("ec2.start_instance", timeout=timedelta(seconds=30))
def start_instance(snapshot: Snapshot) -> ActionOutcome: ...


@declare("ec2.verify_instance_stopped", timeout=timedelta(seconds=20))
def verify_instance_stopped(check: ResourceCheck) -> HealthReport: ...


@declare("k8s.snapshot_deployment_sizing", timeout=timedelta(seconds=20))
def snapshot_deployment_sizing(action: PlannedAction) -> Snapshot: ...


@declare("k8s.set_replicas", timeout=timedelta(seconds=30))
def set_replicas(snapshot: Snapshot) -> ActionOutcome: ...


@declare("k8s.right_size_deployment", timeout=timedelta(seconds=30))
def right_size_deployment(snapshot: Snapshot) -> ActionOutcome: ...


@declare("k8s.restore_deployment_sizing", timeout=timedelta(seconds=30))
def restore_deployment_sizing(snapshot: Snapshot) -> ActionOutcome: ...


@declare("k8s.verify_deployment_sizing", timeout=timedelta(seconds=20))
def verify_deployment_sizing(check: ResourceCheck) -> HealthReport: ...


# --- actions ------------------------------------------------------------------------------------

STOP_INSTANCES = register(
    ActionSpec(
        name="ec2.stop_instances",
        loop=Loop.RESOURCE,
        summary="stop an idle EC2 instance (its disks stay; starting it again undoes it)",
        params=StopInstanceParams,
        state=InstanceState,
        prepare=snapshot_instance,
        do=stop_instance,
        undo=start_instance,
        verify=verify_instance_stopped,
        permissions=Permissions(
            iam=("ec2:DescribeInstances", "ec2:CreateTags", "ec2:StopInstances", "ec2:StartInstances")
        ),
        max_targets=1,
        blast_radius="one instance; whatever runs on it stops, its EBS volumes and address stay",
        example="actions:\n  - type: ec2.stop_instances\n",
    )
)
SET_REPLICAS = register(
    ActionSpec(
        name="k8s.set_replicas",
        loop=Loop.RESOURCE,
        summary="set a non-production Deployment's replicas (0 parks it); undo restores the count",
        params=SetReplicasParams,
        state=DeploymentSizing,
        prepare=snapshot_deployment_sizing,
        do=set_replicas,
        undo=restore_deployment_sizing,
        verify=verify_deployment_sizing,
        permissions=SIZE_DEPLOYMENT,
        max_targets=1,
        blast_radius="one Deployment; its pods beyond the new count are removed",
        example="actions:\n  - type: k8s.set_replicas\n    params: {replicas: 0}\n",
    )
)
RIGHT_SIZE = register(
    ActionSpec(
        name="k8s.right_size",
        loop=Loop.RESOURCE,
        summary="lower a Deployment's CPU and memory requests to its 95th percentile of use plus headroom",
        params=RightSizeParams,
        state=DeploymentSizing,
        prepare=snapshot_deployment_sizing,
        do=right_size_deployment,
        undo=restore_deployment_sizing,
        verify=verify_deployment_sizing,
        permissions=SIZE_DEPLOYMENT,
        max_targets=1,
        blast_radius="one Deployment; its pods are replaced by a rolling update with smaller requests",
        example="actions:\n  - type: k8s.right_size\n",
    )
)
