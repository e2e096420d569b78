"""How an action is declared: the shape of an entry, its activities, its permissions.

An action's activities are declared here as typed *signatures*: module-level
functions under ``@declare(name, ...)`` with no body worth calling. They are
Temporal activity definitions, so a workflow passes them to
``workflow.execute_activity`` and the name is read from the reference, never
retyped; and they import nothing but models, so workflow code can hold them
without pulling boto3 or the Kubernetes client into its sandbox. The activity
classes in ``activities/`` carry the same signature under ``@implements(...)``,
which registers the method under the declared name. The registry meta-test
checks that every declared activity is one the worker registers, with the same
argument and result types.

Each declaration also says how long one attempt may take and, for activities that
page through large reads, how often it must heartbeat.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict
from temporalio import activity

from suture.models import Loop, PlannedAction, Snapshot

F = TypeVar("F", bound=Callable[..., Any])
StateT = TypeVar("StateT", bound="UndoState")

DEFAULT_TIMEOUT = timedelta(seconds=30)
"""For activities declared nowhere: suture's own bookkeeping (audit store, policy files)."""


# --- permissions --------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class RbacRule:
    """One Kubernetes RBAC rule, as a ClusterRole lists it (``""`` is the core group)."""

    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]

    def __str__(self) -> str:
        groups = ",".join(group or "core" for group in self.api_groups)
        return f"{groups}/{','.join(self.resources)}: {', '.join(self.verbs)}"


@dataclass(frozen=True)
class Permissions:
    """What the worker's identity needs: IAM actions (``service:Action``), RBAC rules, Kafka ACLs.

    Kafka ACLs read ``Operation:ResourceType`` (``Read:Topic``, ``Write:Topic``, ``Read:Group``).
    """

    iam: tuple[str, ...] = ()
    rbac: tuple[RbacRule, ...] = ()
    kafka: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.iam or self.rbac or self.kafka)

    def __or__(self, other: Permissions) -> Permissions:
        return Permissions(
            iam=tuple(dict.fromkeys((*self.iam, *other.iam))),
            rbac=tuple(dict.fromkeys((*self.rbac, *other.rbac))),
            kafka=tuple(dict.fromkeys((*self.kafka, *other.kafka))),
        )

    def iam_for(self, operation: str) -> str:
        """The declared IAM action behind a boto3 ``operation`` name, else every declared one."""
        named = [permission for permission in self.iam if permission.partition(":")[2] == operation]
        return ", ".join(named or self.iam)

    def describe(self) -> str:
        return "; ".join([*self.iam, *(str(rule) for rule in self.rbac), *self.kafka])


# --- activities -----------------------------------------------------------------------


@dataclass(frozen=True)
class ActivityDeclaration:
    """One activity's name, its time limits and, for reads, the permissions it needs."""

    name: str
    start_to_close: timedelta
    heartbeat: timedelta | None = None
    permissions: Permissions = field(default_factory=Permissions)
    loop: Loop | None = None


_ACTIVITIES: dict[str, ActivityDeclaration] = {}


def declare(
    name: str,
    *,
    timeout: timedelta,
    heartbeat: timedelta | None = None,
    permissions: Permissions | None = None,
    loop: Loop | None = None,
) -> Callable[[F], F]:
    """Declare the activity ``name`` with the decorated signature.

    Args:
        timeout: the most one attempt may take (start to close).
        heartbeat: for activities that page through large reads: the longest gap
            between heartbeats before Temporal gives the attempt up and retries.
        permissions: what the activity needs when it is a read outside any action.
        loop: the loop whose reads these are, for ``suture permissions``.
    """

    def declared(signature: F) -> F:
        if name in _ACTIVITIES:
            raise ValueError(f"activity {name!r} is declared twice")
        _ACTIVITIES[name] = ActivityDeclaration(name, timeout, heartbeat, permissions or Permissions(), loop)
        return activity.defn(name=name)(signature)

    return declared


def implements(declared: Callable[..., Any]) -> Callable[[F], F]:
    """Register the decorated method as the activity ``declared`` names."""
    return activity.defn(name=activity_name(declared))


def activity_name(reference: Callable[..., Any] | str) -> str:
    """The Temporal name of a declared (or implemented) activity."""
    if isinstance(reference, str):
        return reference
    definition = activity._Definition.must_from_callable(reference)
    if definition.name is None:
        raise ValueError(f"{reference!r} is a dynamic activity; it has no name")
    return definition.name


def activity_declaration(reference: Callable[..., Any] | str) -> ActivityDeclaration:
    """The declaration of an activity; bookkeeping declared nowhere gets the default limit."""
    name = activity_name(reference)
    return _ACTIVITIES.get(name) or ActivityDeclaration(name, DEFAULT_TIMEOUT)


def declared_activities() -> list[ActivityDeclaration]:
    return sorted(_ACTIVITIES.values(), key=lambda declared: declared.name)


# --- actions ---------------------------------------------------------------------------


class ActionParams(BaseModel):
    """Base of every action's parameters: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class NoParams(ActionParams):
    pass


class UndoState(BaseModel):
    """Base of the state an action's ``prepare`` captures and its ``undo`` restores.

    It travels in :class:`~suture.models.Snapshot` as JSON, and may be read days
    later by ``suture undo``: every read goes through the action's model. Keys it
    does not know are ignored, because snapshots of older runs carried a few more.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    @classmethod
    def of(cls: type[StateT], snapshot: Snapshot) -> StateT:
        return cls.model_validate(snapshot.state)

    def snapshot(self, action: PlannedAction) -> Snapshot:
        return Snapshot(action=action, state=self.model_dump(mode="json"))


@dataclass(frozen=True)
class ActionSpec:
    """One registered action.

    Attributes:
        name: registry key used in policies, e.g. ``k8s.rollback``.
        loop: the loop allowed to use it.
        summary: one line a human reads in a briefing.
        params: pydantic model of the accepted parameters (unknown keys refused).
        state: pydantic model of what ``prepare`` captures for the undo.
        prepare: activity that captures the state the undo restores.
        do: activity that carries the action out.
        undo: activity that restores the captured state.
        verify: activity that judges whether the action worked.
        permissions: what the worker's identity needs for prepare, do, undo and verify.
        max_targets: the most targets one run may act on; a plan with more escalates
            before anything is touched.
        blast_radius: what one target's action can affect at most, in words.
        example: a policy snippet using the action.
    """

    name: str
    loop: Loop
    summary: str
    params: type[ActionParams]
    state: type[UndoState]
    prepare: Callable[..., Any]
    do: Callable[..., Any]
    undo: Callable[..., Any]
    verify: Callable[..., Any]
    permissions: Permissions
    max_targets: int
    blast_radius: str
    example: str

    def activities(self) -> dict[str, str]:
        """Step → activity name, for prepare, do, undo and verify."""
        return {step: activity_name(getattr(self, step)) for step in ("prepare", "do", "undo", "verify")}


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


def over_the_cap(actions: Iterable[PlannedAction]) -> str | None:
    """Why a plan acts on more targets than an action's ``max_targets`` allows, or None."""
    targets: dict[str, set[str]] = {}
    for action in actions:
        targets.setdefault(action.type, set()).add(str(action.target))
    for name, found in sorted(targets.items()):
        cap = action_spec(name).max_targets
        if len(found) > cap:
            return (
                f"{name} is planned on {len(found)} targets but may act on at most {cap} per run; "
                "nothing was done"
            )
    return None
