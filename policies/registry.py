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
        permissions=("apps/deployments/scale: get, patch",),
        blast_radius="one Deployment; adds at most max_replicas - current pods",
        example="actions:\n  - type: k8s.scale\n    params: {by: 2, max_replicas: 6}\n",
    )
)
