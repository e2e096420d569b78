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

Errors: a missing Deployment is ``TargetNotFound`` and a request that cannot
succeed (nothing to roll back to, forbidden, invalid) is ``ActionError``, both
non-retryable; an unreachable, throttling or conflicting API is retried.
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
from temporalio import activity
from temporalio.exceptions import ApplicationError
from urllib3.exceptions import HTTPError

from policies.registry import ScaleParams
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

    @activity.defn(name="k8s.rollout_history")
    def rollout_history(self, target: Target) -> RolloutHistory:
        """The Deployment's revisions, newest first, read from the ReplicaSets it owns."""
        deployment = self._deployment(target)
        owned = self._owned_replicasets(target, deployment)
        rollouts = [_rollout(replicaset) for replicaset in owned]
        return RolloutHistory(
            target=target,
            current_revision=_current_revision(deployment, owned),
            rollouts=sorted(rollouts, key=lambda rollout: rollout.revision, reverse=True),
        )

    @activity.defn(name="k8s.snapshot_deployment")
    def snapshot_deployment(self, action: PlannedAction) -> Snapshot:
        """Capture what the undo needs: template, replicas, revision; for a rollback, its destination.

        The destination is fixed here, before acting, so a retried rollback goes
        where the decision meant it to go even if the history moved meanwhile.
        """
        deployment = self._deployment(action.target)
        owned = self._owned_replicasets(action.target, deployment)
        state: Json = {
            "revision": _current_revision(deployment, owned),
            "replicas": _replicas(deployment),
            "template": deployment["spec"]["template"],
            "images": _images(deployment["spec"]["template"]),
        }
        if action.type == "k8s.rollback":
            state["previous"] = _previous_revision(owned)
        return Snapshot(action=action, state=state)

    # --- act ------------------------------------------------------------------------

    @activity.defn(name="k8s.rollback_deployment")
    def rollback_deployment(self, snapshot: Snapshot) -> ActionOutcome:
        """Apply the previous ReplicaSet's template, as ``kubectl rollout undo`` does."""
        action, state = snapshot.action, snapshot.state
        deployment = self._deployment(action.target)
        if _last_action(deployment) == action.idempotency_key:
            return _already_applied(action, deployment)
        previous = state.get("previous")
        if previous is None:
            raise _action_error(f"{action.target} has no previous revision to roll back to")
        if deployment["spec"].get("paused"):
            raise _action_error(f"{action.target} is paused; resume it before rolling back")
        if deployment["spec"]["template"] == previous["template"]:
            return _outcome(
                action, deployment, False, f"already runs the template of revision {previous['revision']}"
            )
        patched = self._patch(
            action.target, _replace_template(deployment, previous["template"], action.idempotency_key)
        )
        detail = (
            f"rolled back from revision {state['revision']} ({', '.join(state['images'])}) "
            f"to the template of revision {previous['revision']} ({', '.join(previous['images'])})"
        )
        return _outcome(action, patched, True, detail)

    @activity.defn(name="k8s.restart_deployment")
    def restart_deployment(self, snapshot: Snapshot) -> ActionOutcome:
        """A rolling restart, as ``kubectl rollout restart`` does: a new restartedAt on the template."""
        action = snapshot.action
        deployment = self._deployment(action.target)
        if _last_action(deployment) == action.idempotency_key:
            return _already_applied(action, deployment)
        restarted_at = _now().strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "metadata": {"annotations": {LAST_ACTION: action.idempotency_key}},
            "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: restarted_at}}}},
        }
        patched = self._patch(action.target, body)
        detail = f"rolling restart of revision {snapshot.state['revision']} (restartedAt {restarted_at})"
        return _outcome(action, patched, True, detail)

    @activity.defn(name="k8s.scale_deployment")
    def scale_deployment(self, snapshot: Snapshot) -> ActionOutcome:
        """Add ``by`` replicas to the count captured before acting, never beyond ``max_replicas``.

        The scale subresource carries only the replica count, so the key is
        recorded on the Deployment in the write that follows. The count is worked
        out from the snapshot, not from what runs now, so a retry between the two
        writes finds it reached and does not add again.
        """
        action = snapshot.action
        deployment = self._deployment(action.target)
        if _last_action(deployment) == action.idempotency_key:
            return _already_applied(action, deployment)
        before, wanted = snapshot.state["replicas"], _scale_target(snapshot)
        if wanted == before:
            return _outcome(
                action, deployment, False, f"already at {before} replicas, the cap for this action"
            )
        self._scale(action.target, wanted)
        patched = self._patch(
            action.target, {"metadata": {"annotations": {LAST_ACTION: action.idempotency_key}}}
        )
        return _outcome(action, patched, True, f"scaled from {before} to {wanted} replicas")

    # --- undo -----------------------------------------------------------------------

    @activity.defn(name="k8s.restore_deployment")
    def restore_deployment(self, snapshot: Snapshot) -> ActionOutcome:
        """Undo a rollback, restart or scale: put back the captured template or replica count."""
        action = snapshot.action
        deployment = self._deployment_or_none(action.target)
        if deployment is None:
            return ActionOutcome(
                action=action, changed=False, detail="the Deployment is gone; nothing to restore"
            )
        if action.type == "k8s.scale":
            return self._restore_replicas(snapshot, deployment)
        return self._restore_template(snapshot, deployment)

    def _restore_template(self, snapshot: Snapshot, deployment: Json) -> ActionOutcome:
        action, captured = snapshot.action, snapshot.state["template"]
        revision = snapshot.state["revision"]
        if deployment["spec"]["template"] == captured:
            return _outcome(action, deployment, False, f"already runs the template of revision {revision}")
        if not _template_as_left(snapshot, deployment["spec"]["template"]):
            raise _changed_since(action, deployment)
        undo_key = action.idempotency_key + UNDO_SUFFIX
        patched = self._patch(action.target, _replace_template(deployment, captured, undo_key))
        detail = f"restored the template of revision {revision} ({', '.join(snapshot.state['images'])})"
        return _outcome(action, patched, True, detail)

    def _restore_replicas(self, snapshot: Snapshot, deployment: Json) -> ActionOutcome:
        action, captured = snapshot.action, snapshot.state["replicas"]
        current = _replicas(deployment)
        if current == captured:
            return _outcome(action, deployment, False, f"already at {captured} replicas")
        if current != _scale_target(snapshot):
            raise _changed_since(action, deployment)
        self._scale(action.target, captured)
        patched = self._patch(
            action.target, {"metadata": {"annotations": {LAST_ACTION: action.idempotency_key + UNDO_SUFFIX}}}
        )
        return _outcome(action, patched, True, f"scaled back from {current} to {captured} replicas")

    # --- API calls ----------------------------------------------------------------------

    def _deployment(self, target: Target) -> Json:
        with _api_errors(target, "reading"):
            return _json(
                self._apps.read_namespaced_deployment(target.name, target.scope, _preload_content=False)
            )

    def _deployment_or_none(self, target: Target) -> Json | None:
        try:
            return self._deployment(target)
        except ApplicationError as error:
            if error.type == "TargetNotFound":
                return None
            raise

    def _owned_replicasets(self, target: Target, deployment: Json) -> list[Json]:
        selector = _selector(deployment)
        with _api_errors(target, "listing ReplicaSets of"):
            listing = _json(
                self._apps.list_namespaced_replica_set(
                    target.scope, label_selector=selector, _preload_content=False
                )
            )
        uid = deployment["metadata"].get("uid")
        return [item for item in listing["items"] if _controller_uid(item) == uid]

    def _patch(self, target: Target, body: Json | list[Json]) -> Json:
        """Patch the Deployment; returns it as the server stored it."""
        with _api_errors(target, "patching"):
            return _json(
                self._apps.patch_namespaced_deployment(
                    target.name, target.scope, body, _preload_content=False
                )
            )

    def _scale(self, target: Target, replicas: int) -> None:
        with _api_errors(target, "scaling"):
            self._apps.patch_namespaced_deployment_scale(
                target.name, target.scope, {"spec": {"replicas": replicas}}, _preload_content=False
            )


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


def _previous_revision(owned: list[Json]) -> Json | None:
    """The second newest revision, which is where ``kubectl rollout undo`` goes."""
    newest_first = sorted(owned, key=_revision, reverse=True)
    if len(newest_first) < 2:
        return None
    previous = newest_first[1]
    template = _template_of(previous)
    return {"revision": _revision(previous), "template": template, "images": _images(template)}


# --- writing ----------------------------------------------------------------------------


def _replace_template(deployment: Json, template: Json, key: str) -> list[Json]:
    """A JSON Patch that swaps the whole template and records ``key`` in the same write."""
    return [{"op": "replace", "path": "/spec/template", "value": template}, _record_key(deployment, key)]


def _record_key(deployment: Json, key: str) -> Json:
    if deployment["metadata"].get("annotations") is None:
        return {"op": "add", "path": "/metadata/annotations", "value": {LAST_ACTION: key}}
    return {"op": "add", "path": "/metadata/annotations/" + LAST_ACTION.replace("/", "~1"), "value": key}


def _scale_target(snapshot: Snapshot) -> int:
    """Where scale-out ends: ``by`` more than captured, capped, and never below what ran."""
    try:
        params = ScaleParams.model_validate(snapshot.action.params)
    except ValidationError as error:
        raise _action_error(f"bad k8s.scale params for {snapshot.action.target}: {error}") from None
    before: int = snapshot.state["replicas"]
    return max(before, min(before + params.by, params.max_replicas))


def _template_as_left(snapshot: Snapshot, current: Json) -> bool:
    """Whether the template is still what the action produced, so restoring undoes only suture's change."""
    if snapshot.action.type == "k8s.rollback":
        previous = snapshot.state.get("previous") or {}
        return bool(current == previous.get("template"))
    if snapshot.action.type == "k8s.restart":
        return _without_restart(current) == _without_restart(snapshot.state["template"])
    return True


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


def _already_applied(action: PlannedAction, deployment: Json) -> ActionOutcome:
    detail = f"already applied: {action.target} carries {action.idempotency_key!r}; nothing done twice"
    return _outcome(action, deployment, False, detail)


def _action_error(message: str) -> ApplicationError:
    return ApplicationError(message, type="ActionError", non_retryable=True)


def _changed_since(action: PlannedAction, deployment: Json) -> ApplicationError:
    images = ", ".join(_images(deployment["spec"]["template"]))
    return _action_error(
        f"{action.target} changed since suture's {action.type} "
        f"(now {images}, {_replicas(deployment)} replicas); not overwriting someone else's change: "
        "restore it by hand if it is still wanted"
    )


@contextmanager
def _api_errors(target: Target, doing: str) -> Iterator[None]:
    """Turn client errors into ones that say what to do, and whether a retry can help."""
    try:
        yield
    except ApiException as error:
        raise _from_api(error, target, doing) from error
    except HTTPError as error:
        raise ApplicationError(
            f"cannot reach the Kubernetes API while {doing} {target}: {error}", type="KubernetesUnreachable"
        ) from error


def _from_api(error: ApiException, target: Target, doing: str) -> ApplicationError:
    status, reason = error.status or 0, error.reason or ""
    if status == 404:
        return ApplicationError(
            f"Deployment {target} not found: check the namespace and name the alert carries",
            type="TargetNotFound",
            non_retryable=True,
        )
    if status in (401, 403):
        return _action_error(
            f"{doing} {target} was refused ({status} {reason}): grant the worker's identity access"
        )
    if status in (400, 422):
        return _action_error(
            f"{doing} {target} was rejected as invalid ({status} {reason}): {_message(error)}"
        )
    return ApplicationError(
        f"{doing} {target} failed ({status} {reason}); retrying", type="KubernetesApiError"
    )


def _message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message", ""))
    except ValueError:
        return str(error.body or "")
