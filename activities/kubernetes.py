"""The reliability loop's hands on Kubernetes: rollout history, rollback, restart, scale, restore.

Why the code reads the way it does:

* **Idempotent by the business key.** Every change writes the action's
  idempotency key to the Deployment (annotation ``suture.dev/last-action``) in the
  same request as the change itself, so a retried activity, or a duplicate run of
  the same incident, reads "already applied" and answers ``changed=False`` instead
  of acting twice. Finding the target state already in place is success too.
* **Exact templates.** Rollback does what ``kubectl rollout undo`` does: it
  replaces ``spec.template`` with the previous ReplicaSet's template, minus its
  ``pod-template-hash`` label, in one JSON Patch. A merge patch would keep keys
  that only the newer template had (a restart annotation, an added label) and
  leave a template that matches no ReplicaSet.
* **Undo never overwrites someone else's change.** Restore puts back the captured
  template or replica count only while the Deployment is still as suture left
  it, or already back where it was; if a person or a pipeline changed it since,
  restore stops with a non-retryable error for a human to settle.
* **Plain JSON.** Objects are read as the API serves them (``_preload_content=False``)
  so a template round-trips untouched, not through client models that drop
  fields they do not know.
* **Blocking calls stay off the event loop.** The methods are synchronous; the
  worker runs them on its thread pool.

Errors (see :mod:`suture.errors`): a missing Deployment is ``TargetNotFound``, a
refusal ``PermissionDenied`` naming the RBAC rules the action is declared with, a
restore over someone else's change ``ChangedSinceAction``, and any other request
that cannot succeed (nothing to roll back to, invalid) ``ActionError``; all of
them are permanent. An unreachable, throttling or conflicting API is retried.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from kubernetes.client import ApiClient, AppsV1Api
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError
from urllib3.exceptions import HTTPError

from policies.actions import Permissions, action_spec, activity_declaration, implements
from policies.actions import kubernetes as declared
from policies.actions.kubernetes import DeploymentState, Revision, ScaleParams
from suture.errors import (
    ActionError,
    ChangedSinceAction,
    KubernetesApiError,
    KubernetesUnreachable,
    PermissionDenied,
    TargetNotFound,
)
from suture.models import ActionOutcome, Evidence, PlannedAction, Rollout, RolloutHistory, Snapshot, Target

LAST_ACTION = "suture.dev/last-action"
REVISION = "deployment.kubernetes.io/revision"
TEMPLATE_HASH = "pod-template-hash"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
UNDO_SUFFIX = ":undo"

Json = dict[str, Any]


class KubernetesActions:
    """Activities that read and change Deployments through the official client."""

    def __init__(self, api: ApiClient) -> None:
        self._apps = AppsV1Api(api)

    # --- read -----------------------------------------------------------------------

    @implements(declared.rollout_history)
    def rollout_history(self, target: Target) -> RolloutHistory:
        """The Deployment's revisions, newest first, read from the ReplicaSets it owns."""
        needs = activity_declaration(declared.rollout_history).permissions
        deployment = self._deployment(target, needs)
        owned = self._owned_replicasets(target, deployment, needs)
        rollouts = [_rollout(replicaset) for replicaset in owned]
        return RolloutHistory(
            target=target,
            current_revision=_current_revision(deployment, owned),
            rollouts=sorted(rollouts, key=lambda rollout: rollout.revision, reverse=True),
        )

    @implements(declared.snapshot_deployment)
    def snapshot_deployment(self, action: PlannedAction) -> Snapshot:
        """Capture what the undo needs: template, replicas, revision; for a rollback, its destination.

        The destination is fixed here, before acting, so a retried rollback goes
        where the decision meant it to go even if the history moved meanwhile.
        """
        needs = _needs(action)
        deployment = self._deployment(action.target, needs)
        owned = self._owned_replicasets(action.target, deployment, needs)
        template = deployment["spec"]["template"]
        state = DeploymentState(
            revision=_current_revision(deployment, owned),
            replicas=_replicas(deployment),
            template=template,
            images=_images(template),
            previous=_previous_revision(owned) if action.type == declared.ROLLBACK.name else None,
        )
        return state.snapshot(action)

    # --- act ------------------------------------------------------------------------

    @implements(declared.rollback_deployment)
    def rollback_deployment(self, snapshot: Snapshot) -> ActionOutcome:
        """Apply the previous ReplicaSet's template, as ``kubectl rollout undo`` does."""
        action = snapshot.action
        deployment = self._deployment(action.target, _needs(action))
        state = DeploymentState.of(snapshot)
        if _last_action(deployment) == action.idempotency_key:
            return _already_applied(action, deployment, state, _rollback_detail(action, state))
        previous = state.previous
        if previous is None:
            raise ActionError.failure(f"{action.target} has no previous revision to roll back to")
        if deployment["spec"].get("paused"):
            raise ActionError.failure(f"{action.target} is paused; resume it before rolling back")
        if deployment["spec"]["template"] == previous.template:
            return _outcome(
                action, deployment, False, f"already runs the template of revision {previous.revision}"
            )
        patched = self._patch(
            action, _replace_template(deployment, previous.template, action.idempotency_key)
        )
        return _outcome(action, patched, True, _rollback_detail(action, state))

    @implements(declared.restart_deployment)
    def restart_deployment(self, snapshot: Snapshot) -> ActionOutcome:
        """A rolling restart, as ``kubectl rollout restart`` does: a new restartedAt on the template."""
        action = snapshot.action
        deployment = self._deployment(action.target, _needs(action))
        state = DeploymentState.of(snapshot)
        if _last_action(deployment) == action.idempotency_key:
            restarted_at = _restarted_at(deployment["spec"]["template"])
            detail = f"rolling restart of revision {state.revision} (restartedAt {restarted_at})"
            return _already_applied(action, deployment, state, detail)
        restarted_at = _now().strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "metadata": {"annotations": {LAST_ACTION: action.idempotency_key}},
            "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: restarted_at}}}},
        }
        patched = self._patch(action, body)
        detail = f"rolling restart of revision {state.revision} (restartedAt {restarted_at})"
        return _outcome(action, patched, True, detail)

    @implements(declared.scale_deployment)
    def scale_deployment(self, snapshot: Snapshot) -> ActionOutcome:
        """Add ``by`` replicas to the count captured before acting, never beyond ``max_replicas``.

        The scale subresource carries only the replica count, so the key is
        recorded on the Deployment in the write that follows. The count is worked
        out from the snapshot, not from what runs now, so a retry between the two
        writes finds it reached and does not add again.
        """
        action = snapshot.action
        deployment = self._deployment(action.target, _needs(action))
        state = DeploymentState.of(snapshot)
        before, wanted = state.replicas, _scale_target(action, state)
        detail = f"scaled {action.target} from {before} to {wanted} replicas"
        if _last_action(deployment) == action.idempotency_key:
            return _already_applied(action, deployment, state, detail)
        if wanted == before:
            return _outcome(
                action, deployment, False, f"already at {before} replicas, the cap for this action"
            )
        self._scale(action, wanted)
        patched = self._patch(action, {"metadata": {"annotations": {LAST_ACTION: action.idempotency_key}}})
        return _outcome(action, patched, True, detail)

    # --- undo -----------------------------------------------------------------------

    @implements(declared.restore_deployment)
    def restore_deployment(self, snapshot: Snapshot) -> ActionOutcome:
        """Undo a rollback, restart or scale: put back the captured template or replica count."""
        action = snapshot.action
        deployment = self._deployment_or_none(action)
        if deployment is None:
            return ActionOutcome(
                action=action, changed=False, detail="the Deployment is gone; nothing to restore"
            )
        state = DeploymentState.of(snapshot)
        if action.type == declared.SCALE.name:
            return self._restore_replicas(action, state, deployment)
        return self._restore_template(action, state, deployment)

    def _restore_template(
        self, action: PlannedAction, state: DeploymentState, deployment: Json
    ) -> ActionOutcome:
        if deployment["spec"]["template"] == state.template:
            return _outcome(
                action, deployment, False, f"already runs the template of revision {state.revision}"
            )
        if not _template_as_left(action, state, deployment["spec"]["template"]):
            raise _changed_since(action, deployment)
        undo_key = action.idempotency_key + UNDO_SUFFIX
        patched = self._patch(action, _replace_template(deployment, state.template, undo_key))
        detail = f"restored the template of revision {state.revision} ({', '.join(state.images)})"
        return _outcome(action, patched, True, detail)

    def _restore_replicas(
        self, action: PlannedAction, state: DeploymentState, deployment: Json
    ) -> ActionOutcome:
        captured, current = state.replicas, _replicas(deployment)
        if current == captured:
            return _outcome(action, deployment, False, f"already at {captured} replicas")
        if current != _scale_target(action, state):
            raise _changed_since(action, deployment)
        self._scale(action, captured)
        patched = self._patch(
            action, {"metadata": {"annotations": {LAST_ACTION: action.idempotency_key + UNDO_SUFFIX}}}
        )
        return _outcome(action, patched, True, f"scaled back from {current} to {captured} replicas")

    # --- API calls ----------------------------------------------------------------------

    def _deployment(self, target: Target, needs: Permissions) -> Json:
        with _api_errors(target, "reading", needs):
            return _json(
                self._apps.read_namespaced_deployment(target.name, target.scope, _preload_content=False)
            )

    def _deployment_or_none(self, action: PlannedAction) -> Json | None:
        try:
            return self._deployment(action.target, _needs(action))
        except ApplicationError as error:
            if TargetNotFound.matches(error):
                return None
            raise

    def _owned_replicasets(self, target: Target, deployment: Json, needs: Permissions) -> list[Json]:
        selector = _selector(deployment)
        with _api_errors(target, "listing ReplicaSets of", needs):
            listing = _json(
                self._apps.list_namespaced_replica_set(
                    target.scope, label_selector=selector, _preload_content=False
                )
            )
        uid = deployment["metadata"].get("uid")
        return [item for item in listing["items"] if _controller_uid(item) == uid]

    def _patch(self, action: PlannedAction, body: Json | list[Json]) -> Json:
        """Patch the Deployment; returns it as the server stored it."""
        target = action.target
        with _api_errors(target, "patching", _needs(action)):
            return _json(
                self._apps.patch_namespaced_deployment(
                    target.name, target.scope, body, _preload_content=False
                )
            )

    def _scale(self, action: PlannedAction, replicas: int) -> None:
        target = action.target
        with _api_errors(target, "scaling", _needs(action)):
            self._apps.patch_namespaced_deployment_scale(
                target.name, target.scope, {"spec": {"replicas": replicas}}, _preload_content=False
            )


def _needs(action: PlannedAction) -> Permissions:
    """What the action is declared to need, for the message when the API refuses."""
    return action_spec(action.type).permissions


# --- reading Deployments and ReplicaSets ------------------------------------------------


def _json(response: Any) -> Any:
    return json.loads(response.data)


def _now() -> datetime:
    return datetime.now(UTC)


def _annotations(obj: Json) -> dict[str, str]:
    return dict(obj["metadata"].get("annotations") or {})


def _last_action(deployment: Json) -> str | None:
    return _annotations(deployment).get(LAST_ACTION)


def _revision(obj: Json) -> int:
    return int(_annotations(obj).get(REVISION, 0))


def _replicas(deployment: Json) -> int:
    return int(deployment["spec"].get("replicas", 1))


def _images(template: Json) -> list[str]:
    return [container.get("image", "") for container in template.get("spec", {}).get("containers", [])]


def _selector(deployment: Json) -> str:
    labels = deployment["spec"].get("selector", {}).get("matchLabels", {})
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _controller_uid(obj: Json) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            uid: str | None = ref.get("uid")
            return uid
    return None


def _template_of(replicaset: Json) -> Json:
    """The ReplicaSet's pod template as its Deployment had it: without ``pod-template-hash``."""
    template: Json = json.loads(json.dumps(replicaset["spec"]["template"]))
    labels = template.get("metadata", {}).get("labels")
    if labels is not None:
        labels.pop(TEMPLATE_HASH, None)
    return template


def _rollout(replicaset: Json) -> Rollout:
    return Rollout(
        revision=_revision(replicaset),
        replicaset=replicaset["metadata"]["name"],
        images=_images(replicaset["spec"]["template"]),
        created_at=datetime.fromisoformat(replicaset["metadata"]["creationTimestamp"]),
    )


def _current_revision(deployment: Json, owned: list[Json]) -> int:
    """The revision of the ReplicaSet that matches the template, else what the Deployment claims."""
    for replicaset in owned:
        if _template_of(replicaset) == deployment["spec"]["template"]:
            return _revision(replicaset)
    return _revision(deployment)


def _previous_revision(owned: list[Json]) -> Revision | None:
    """The second newest revision, which is where ``kubectl rollout undo`` goes."""
    newest_first = sorted(owned, key=_revision, reverse=True)
    if len(newest_first) < 2:
        return None
    previous = newest_first[1]
    template = _template_of(previous)
    return Revision(revision=_revision(previous), template=template, images=_images(template))


# --- writing ----------------------------------------------------------------------------


def _replace_template(deployment: Json, template: Json, key: str) -> list[Json]:
    """A JSON Patch that swaps the whole template and records ``key`` in the same write."""
    return [{"op": "replace", "path": "/spec/template", "value": template}, _record_key(deployment, key)]


def _record_key(deployment: Json, key: str) -> Json:
    if deployment["metadata"].get("annotations") is None:
        return {"op": "add", "path": "/metadata/annotations", "value": {LAST_ACTION: key}}
    return {"op": "add", "path": "/metadata/annotations/" + LAST_ACTION.replace("/", "~1"), "value": key}


def _scale_target(action: PlannedAction, state: DeploymentState) -> int:
    """Where scale-out ends: ``by`` more than captured, capped, and never below what ran."""
    try:
        params = ScaleParams.model_validate(action.params)
    except ValidationError as error:
        raise ActionError.failure(f"bad k8s.scale params for {action.target}: {error}") from None
    before = state.replicas
    return max(before, min(before + params.by, params.max_replicas))


def _template_as_left(action: PlannedAction, state: DeploymentState, current: Json) -> bool:
    """Whether the template is still what the action produced, so restoring undoes only suture's change."""
    if action.type == declared.ROLLBACK.name:
        return state.previous is not None and current == state.previous.template
    if action.type == declared.RESTART.name:
        return _without_restart(current) == _without_restart(state.template)
    return True


def _restarted_at(template: Json) -> str:
    return str((template.get("metadata", {}).get("annotations") or {}).get(RESTARTED_AT, "unknown"))


def _without_restart(template: Json) -> Json:
    copy: Json = json.loads(json.dumps(template))
    annotations = copy.get("metadata", {}).get("annotations") or {}
    annotations.pop(RESTARTED_AT, None)
    if "annotations" in copy.get("metadata", {}) and not annotations:
        del copy["metadata"]["annotations"]
    return copy


# --- outcomes and errors -------------------------------------------------------------------


def _outcome(action: PlannedAction, deployment: Json, changed: bool, detail: str) -> ActionOutcome:
    template = deployment["spec"]["template"]
    evidence = Evidence(
        source="kubernetes",
        query=f"deployment {action.target}",
        value=", ".join(_images(template)),
        at=_now(),
        note=f"replicas {_replicas(deployment)}; revision annotation {_revision(deployment)}",
    )
    return ActionOutcome(action=action, changed=changed, detail=detail, evidence=[evidence])


def _rollback_detail(action: PlannedAction, state: DeploymentState) -> str:
    previous = state.previous
    if previous is None:
        return f"rolled back {action.target} from revision {state.revision}"
    return (
        f"rolled back {action.target} from revision {state.revision} ({', '.join(state.images)}) "
        f"to the template of revision {previous.revision} ({', '.join(previous.images)})"
    )


def _already_applied(
    action: PlannedAction, deployment: Json, state: DeploymentState, detail: str
) -> ActionOutcome:
    """The Deployment carries this action's key: say what the change was, not only that it is done.

    A retry after a crash holds the snapshot taken before the change, so ``detail``
    describes it. A duplicate run captured its snapshot after the change; then the
    Deployment still matches that snapshot and there is nothing more to tell.
    """
    key = f"{action.target} carries {action.idempotency_key!r}; nothing done twice"
    as_captured = deployment["spec"]["template"] == state.template and _replicas(deployment) == state.replicas
    if as_captured:
        return _outcome(action, deployment, False, f"already applied by an earlier run: {key}")
    return _outcome(action, deployment, False, f"{detail} (applied by an earlier attempt: {key})")


def _changed_since(action: PlannedAction, deployment: Json) -> ApplicationError:
    images = ", ".join(_images(deployment["spec"]["template"]))
    return ChangedSinceAction.failure(
        f"{action.target} changed since suture's {action.type} "
        f"(now {images}, {_replicas(deployment)} replicas); not overwriting someone else's change: "
        "restore it by hand if it is still wanted"
    )


@contextmanager
def _api_errors(target: Target, doing: str, needs: Permissions) -> Iterator[None]:
    """Turn client errors into ones that say what to do, and whether a retry can help."""
    try:
        yield
    except ApiException as error:
        raise _from_api(error, target, doing, needs) from error
    except HTTPError as error:
        raise KubernetesUnreachable.failure(
            f"cannot reach the Kubernetes API while {doing} {target}: {error}"
        ) from error


def _from_api(error: ApiException, target: Target, doing: str, needs: Permissions) -> ApplicationError:
    status, reason = error.status or 0, error.reason or ""
    if status == 404:
        return TargetNotFound.failure(
            f"Deployment {target} not found: check the namespace and name the alert carries"
        )
    if status in (401, 403):
        return PermissionDenied.failure(
            f"{doing} {target} was refused ({status} {reason}): grant the worker's identity "
            f"{needs.describe()} (suture permissions --rbac prints the ClusterRole)"
        )
    if status in (400, 422):
        return ActionError.failure(
            f"{doing} {target} was rejected as invalid ({status} {reason}): {_message(error)}"
        )
    return KubernetesApiError.failure(f"{doing} {target} failed ({status} {reason}); retrying")


def _message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message", ""))
    except ValueError:
        return str(error.body or "")
