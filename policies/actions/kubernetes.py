"""The reliability loop's actions on Deployments, declared; ``activities/kubernetes.py`` implements them.

Every action captures the same undo state (template, replicas, revision; for a
rollback also where it goes) and is verified by the policy's health query, the
same signal that fired.
"""

# mypy: disable-error-code="empty-body"
# The activity signatures below are declarations; their bodies never run.

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from policies.actions.declaration import (
    ActionParams,
    ActionSpec,
    NoParams,
    Permissions,
    RbacRule,
    UndoState,
    declare,
    register,
)
from policies.actions.prometheus import check_health
from suture.models import ActionOutcome, Loop, PlannedAction, RolloutHistory, Snapshot, Target

READ_DEPLOYMENT = RbacRule(("apps",), ("deployments",), ("get",))
LIST_REPLICASETS = RbacRule(("apps",), ("replicasets",), ("list",))
PATCH_DEPLOYMENT = RbacRule(("apps",), ("deployments",), ("get", "patch"))
PATCH_SCALE = RbacRule(("apps",), ("deployments/scale",), ("patch",))

TEMPLATE_CHANGE = Permissions(rbac=(PATCH_DEPLOYMENT, LIST_REPLICASETS))


class ScaleParams(ActionParams):
    by: int = Field(default=1, ge=1, description="replicas to add")
    max_replicas: int = Field(default=10, ge=1, description="never scale beyond this")


class Revision(BaseModel):
    """A revision a rollback goes to: its number, pod template (as the API serves it) and images."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    revision: int
    template: dict[str, Any]
    images: list[str]


class DeploymentState(UndoState):
    """What a Deployment ran before suture acted, and for a rollback where it was sent."""

    revision: int
    replicas: int
    template: dict[str, Any]
    images: list[str]
    previous: Revision | None = None
    """The rollback's destination, fixed before acting; None for other actions or no history."""


# --- activities ------------------------------------------------------------------------


@declare(
    "k8s.rollout_history",
    timeout=timedelta(seconds=20),
    permissions=Permissions(rbac=(READ_DEPLOYMENT, LIST_REPLICASETS)),
    loop=Loop.RELIABILITY,
)
def rollout_history(target: Target) -> RolloutHistory: ...


@declare("k8s.snapshot_deployment", timeout=timedelta(seconds=20))
def snapshot_deployment(action: PlannedAction) -> Snapshot: ...


@declare("k8s.rollback_deployment", timeout=timedelta(seconds=30))
def rollback_deployment(snapshot: Snapshot) -> ActionOutcome: ...


@declare("k8s.restart_deployment", timeout=timedelta(seconds=30))
def restart_deployment(snapshot: Snapshot) -> ActionOutcome: ...


@declare("k8s.scale_deployment", timeout=timedelta(seconds=30))
def scale_deployment(snapshot: Snapshot) -> ActionOutcome: ...


@declare("k8s.restore_deployment", timeout=timedelta(seconds=30))
def restore_deployment(snapshot: Snapshot) -> ActionOutcome: ...


# --- actions ---------------------------------------------------------------------------

ROLLBACK = register(
    ActionSpec(
        name="k8s.rollback",
        loop=Loop.RELIABILITY,
        summary="roll the Deployment back to its previous ReplicaSet's pod template",
        params=NoParams,
        state=DeploymentState,
        prepare=snapshot_deployment,
        do=rollback_deployment,
        undo=restore_deployment,
        verify=check_health,
        permissions=TEMPLATE_CHANGE,
        max_targets=1,
        blast_radius="one Deployment; its pods are replaced by a rolling update",
        example="actions:\n  - type: k8s.rollback\n",
    )
)
RESTART = register(
    ActionSpec(
        name="k8s.restart",
        loop=Loop.RELIABILITY,
        summary="rolling restart of the Deployment (kubectl rollout restart)",
        params=NoParams,
        state=DeploymentState,
        prepare=snapshot_deployment,
        do=restart_deployment,
        undo=restore_deployment,
        verify=check_health,
        permissions=TEMPLATE_CHANGE,
        max_targets=1,
        blast_radius="one Deployment; pods replaced one by one, no spec change",
        example="actions:\n  - type: k8s.restart\n",
    )
)
SCALE = register(
    ActionSpec(
        name="k8s.scale",
        loop=Loop.RELIABILITY,
        summary="scale the Deployment out by a few replicas, capped",
        params=ScaleParams,
        state=DeploymentState,
        prepare=snapshot_deployment,
        do=scale_deployment,
        undo=restore_deployment,
        verify=check_health,
        permissions=TEMPLATE_CHANGE | Permissions(rbac=(PATCH_SCALE,)),
        max_targets=1,
        blast_radius="one Deployment; adds at most max_replicas - current pods",
        example="actions:\n  - type: k8s.scale\n    params: {by: 2, max_replicas: 6}\n",
    )
)
