"""The resource loop's hands: stop an EC2 instance, scale a Deployment, right-size its requests; and undo.

Why the code reads the way it does:

* **Idempotent by the business key.** Each change records the action's
  idempotency key on the resource itself, in the write before (EC2 tag
  ``suture:last-action``) or the same write as (Deployment annotation
  ``suture.dev/last-action``) the change. A retried activity or a second run of
  the same finding reads "already applied"; a resource already in the target
  state is success with ``changed=False``.
* **Undo never overwrites someone else's change.** Starting an instance again,
  or putting replicas or requests back, happens only while the resource is still
  as suture left it (or already back); otherwise the undo stops with
  ``ChangedSinceAction`` for a human to settle.
* **Verification re-reads the resource.** ``verify`` answers ``healthy`` only
  while the resource still holds the state suture left; anything else is
  ``unhealthy`` and the loop undoes and escalates.
* **Blocking clients stay off the event loop.** boto3 and the Kubernetes client
  are synchronous; the worker runs these methods on its thread pool.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from kubernetes.client import ApiClient, AppsV1Api
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from policies.actions.declaration import implements
from policies.actions.resource import (
    DeploymentSizing,
    InstanceState,
    RightSizeParams,
    SetReplicasParams,
    restore_deployment_sizing,
    right_size_deployment,
    set_replicas,
    snapshot_deployment_sizing,
    snapshot_instance,
    start_instance,
    stop_instance,
    verify_deployment_sizing,
    verify_instance_stopped,
)
from suture.errors import (
    ActionError,
    AwsUnavailable,
    ChangedSinceAction,
    KubernetesApiError,
    KubernetesUnreachable,
    PermissionDenied,
    TargetNotFound,
)
from suture.fleet import ResourceCheck
from suture.models import ActionOutcome, Evidence, HealthReport, PlannedAction, Snapshot, Verdict

EC2_KEY_TAG = "suture:last-action"
LAST_ACTION = "suture.dev/last-action"
UNDO_SUFFIX = ":undo"
ClientFactory = Callable[[str, str], Any]
Json = dict[str, Any]


class InstanceReclaim:
    """Stop and start one EC2 instance; verify it stays stopped."""

    def __init__(self, clients: ClientFactory) -> None:
        self._clients = clients

    @implements(snapshot_instance)
    def snapshot_instance(self, action: PlannedAction) -> Snapshot:
        instance = self._instance(action)
        state = InstanceState(
            region=_region(action),
            state=instance["State"]["Name"],
            instance_type=instance["InstanceType"],
        )
        return state.snapshot(action)

    @implements(stop_instance)
    def stop_instance(self, snapshot: Snapshot) -> ActionOutcome:
        action = snapshot.action
        instance = self._instance(action)
        state = instance["State"]["Name"]
        if state in ("stopped", "stopping"):
            key = _tags(instance).get(EC2_KEY_TAG)
            done = "already applied" if key == action.idempotency_key else f"already {state}"
            return _outcome(action, False, f"{done}: {action.target.name} is {state}", state)
        if state != "running":
            raise ActionError.failure(f"{action.target.name} is {state}; only a running instance is stopped")
        ec2 = self._ec2(action)
        with _aws(f"stopping {action.target.name}", "ec2:CreateTags, ec2:StopInstances"):
            ec2.create_tags(
                Resources=[action.target.name], Tags=[{"Key": EC2_KEY_TAG, "Value": action.idempotency_key}]
            )
            ec2.stop_instances(InstanceIds=[action.target.name])
        return _outcome(
            action, True, f"stopped {action.target.name} ({instance['InstanceType']})", "stopping"
        )

    @implements(start_instance)
    def start_instance(self, snapshot: Snapshot) -> ActionOutcome:
        action, before = snapshot.action, InstanceState.of(snapshot)
        instance = self._instance(action)
        state = instance["State"]["Name"]
        if state in ("running", "pending") or before.state != "running":
            return _outcome(action, False, f"{action.target.name} is already {state}", state)
        if _tags(instance).get(EC2_KEY_TAG) != action.idempotency_key:
            raise ChangedSinceAction.failure(
                f"{action.target.name} was changed since suture stopped it; start it by hand if still wanted"
            )
        with _aws(f"starting {action.target.name}", "ec2:StartInstances"):
            self._ec2(action).start_instances(InstanceIds=[action.target.name])
        return _outcome(action, True, f"started {action.target.name} again", "pending")

    @implements(verify_instance_stopped)
    def verify_instance_stopped(self, check: ResourceCheck) -> HealthReport:
        instance = self._instance(check.action)
        state = instance["State"]["Name"]
        evidence = [_evidence(check.action, f"instance state {state}")]
        if state in ("stopped", "stopping"):
            return HealthReport(
                verdict=Verdict.HEALTHY, reason=f"{check.action.target.name} stays {state}", evidence=evidence
            )
        return HealthReport(
            verdict=Verdict.UNHEALTHY,
            reason=f"{check.action.target.name} is {state} again: something needs it running",
            evidence=evidence,
        )

    def _ec2(self, action: PlannedAction) -> Any:
        return self._clients("ec2", _region(action))

    def _instance(self, action: PlannedAction) -> Json:
        with _aws(f"describing {action.target.name}", "ec2:DescribeInstances"):
            try:
                reservations = self._ec2(action).describe_instances(InstanceIds=[action.target.name])
            except ClientError as error:
                if "NotFound" in error.response.get("Error", {}).get("Code", ""):
                    raise TargetNotFound.failure(f"instance {action.target.name} does not exist") from error
                raise
        instances = [item for page in reservations["Reservations"] for item in page["Instances"]]
        if not instances:
            raise TargetNotFound.failure(f"instance {action.target.name} does not exist")
        instance: Json = instances[0]
        return instance


class DeploymentReclaim:
    """Scale a Deployment or right-size its requests; put them back; verify they hold."""

    def __init__(self, api: ApiClient) -> None:
        self._apps = AppsV1Api(api)

    @implements(snapshot_deployment_sizing)
    def snapshot_deployment_sizing(self, action: PlannedAction) -> Snapshot:
        deployment = self._deployment(action)
        return _sizing(deployment).snapshot(action)

    @implements(set_replicas)
    def set_replicas(self, snapshot: Snapshot) -> ActionOutcome:
        action = snapshot.action
        wanted = SetReplicasParams.model_validate(action.params).replicas
        deployment = self._deployment(action)
        if _last_action(deployment) == action.idempotency_key or _replicas(deployment) == wanted:
            return _outcome(action, False, f"already at {wanted} replicas", str(wanted))
        self._patch(action, [_record_key(deployment, action.idempotency_key)])
        self._scale(action, wanted)
        before = DeploymentSizing.of(snapshot).replicas
        return _outcome(action, True, f"scaled from {before} to {wanted} replicas", str(wanted))

    @implements(right_size_deployment)
    def right_size_deployment(self, snapshot: Snapshot) -> ActionOutcome:
        action = snapshot.action
        wanted = RightSizeParams.model_validate(action.params).requests
        deployment = self._deployment(action)
        if _last_action(deployment) == action.idempotency_key:
            return _outcome(action, False, "already applied", "right-sized")
        patch = _requests_patch(deployment, {name: item.quantities() for name, item in wanted.items()})
        self._patch(action, [*patch, _record_key(deployment, action.idempotency_key)])
        detail = ", ".join(
            f"{name}: cpu {item.cpu_cores:g}, memory {item.memory_gib:g}Gi" for name, item in wanted.items()
        )
        return _outcome(action, True, f"requests set to {detail}", "right-sized")

    @implements(restore_deployment_sizing)
    def restore_deployment_sizing(self, snapshot: Snapshot) -> ActionOutcome:
        action, before = snapshot.action, DeploymentSizing.of(snapshot)
        deployment = self._deployment_or_none(action)
        if deployment is None:
            return _outcome(action, False, "the Deployment is gone; nothing to restore", "gone")
        if _replicas(deployment) == before.replicas and _requests(deployment) == before.requests:
            return _outcome(action, False, "already as it was before suture acted", "restored")
        if _last_action(deployment) != action.idempotency_key:
            raise ChangedSinceAction.failure(
                f"{action.target} changed since suture's {action.type}; restore it by hand if still wanted"
            )
        patch = _requests_patch(deployment, before.requests)
        self._patch(action, [*patch, _record_key(deployment, action.idempotency_key + UNDO_SUFFIX)])
        self._scale(action, before.replicas)
        return _outcome(action, True, f"restored {before.replicas} replicas and the requests", "restored")

    @implements(verify_deployment_sizing)
    def verify_deployment_sizing(self, check: ResourceCheck) -> HealthReport:
        action = check.action
        deployment = self._deployment(action)
        now = _sizing(deployment)
        evidence = [_evidence(action, f"replicas {now.replicas}; requests {json.dumps(now.requests)}")]
        if _last_action(deployment) != action.idempotency_key:
            return HealthReport(
                verdict=Verdict.UNHEALTHY,
                reason=f"{action.target} was changed again after suture's {action.type}",
                evidence=evidence,
            )
        return HealthReport(
            verdict=Verdict.HEALTHY, reason=f"{action.target} holds its new size", evidence=evidence
        )

    # --- API calls ----------------------------------------------------------------------

    def _deployment(self, action: PlannedAction) -> Json:
        with _kube(action, "reading"):
            response = self._apps.read_namespaced_deployment(
                action.target.name, action.target.scope, _preload_content=False
            )
        found: Json = json.loads(response.data)  # type: ignore[attr-defined]
        return found

    def _deployment_or_none(self, action: PlannedAction) -> Json | None:
        try:
            return self._deployment(action)
        except Exception as error:
            if TargetNotFound.matches(error):
                return None
            raise

    def _patch(self, action: PlannedAction, body: list[Json]) -> None:
        with _kube(action, "patching"):
            self._apps.patch_namespaced_deployment(
                action.target.name, action.target.scope, body, _preload_content=False
            )

    def _scale(self, action: PlannedAction, replicas: int) -> None:
        with _kube(action, "scaling"):
            self._apps.patch_namespaced_deployment_scale(
                action.target.name,
                action.target.scope,
                {"spec": {"replicas": replicas}},
                _preload_content=False,
            )


# --- helpers ----------------------------------------------------------------------------


def _region(action: PlannedAction) -> str:
    region = action.params.get("region")
    if not region:
        raise ActionError.failure(f"{action.type} on {action.target} carries no region")
    return str(region)


def _tags(instance: Json) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}


def _replicas(deployment: Json) -> int:
    return int(deployment["spec"].get("replicas", 1))


def _containers(deployment: Json) -> list[Json]:
    containers: list[Json] = deployment["spec"]["template"]["spec"].get("containers", [])
    return containers


def _requests(deployment: Json) -> dict[str, dict[str, str]]:
    return {
        container["name"]: dict(container.get("resources", {}).get("requests", {}))
        for container in _containers(deployment)
    }


def _sizing(deployment: Json) -> DeploymentSizing:
    return DeploymentSizing(replicas=_replicas(deployment), requests=_requests(deployment))


def _last_action(deployment: Json) -> str | None:
    return (deployment["metadata"].get("annotations") or {}).get(LAST_ACTION)


def _record_key(deployment: Json, key: str) -> Json:
    if deployment["metadata"].get("annotations") is None:
        return {"op": "add", "path": "/metadata/annotations", "value": {LAST_ACTION: key}}
    return {"op": "add", "path": "/metadata/annotations/" + LAST_ACTION.replace("/", "~1"), "value": key}


def _requests_patch(deployment: Json, wanted: dict[str, dict[str, str]]) -> list[Json]:
    """JSON Patch setting each named container's requests; containers are found by name, not position."""
    patch = []
    for index, container in enumerate(_containers(deployment)):
        if container["name"] not in wanted:
            continue
        resources = container.get("resources")
        base = f"/spec/template/spec/containers/{index}/resources"
        if resources is None:
            patch.append({"op": "add", "path": base, "value": {"requests": wanted[container["name"]]}})
        else:
            patch.append({"op": "add", "path": f"{base}/requests", "value": wanted[container["name"]]})
    return patch


def _outcome(action: PlannedAction, changed: bool, detail: str, state: str) -> ActionOutcome:
    return ActionOutcome(action=action, changed=changed, detail=detail, evidence=[_evidence(action, state)])


def _evidence(action: PlannedAction, note: str) -> Evidence:
    source = "aws" if action.target.kind == "ec2-instance" else "kubernetes"
    return Evidence(
        source=source, query=f"{action.target.kind} {action.target}", at=datetime.now(UTC), note=note
    )


@contextmanager
def _aws(doing: str, permission: str) -> Iterator[None]:
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("AccessDenied", "UnauthorizedOperation"):
            raise PermissionDenied.failure(f"{doing} was refused: grant the worker {permission}") from error
        if "NotFound" in code or code == "InvalidInstanceID.Malformed":
            raise TargetNotFound.failure(f"{doing}: {error}") from error
        raise AwsUnavailable.failure(f"{doing} failed ({code}); retrying") from error
    except BotoCoreError as error:
        raise AwsUnavailable.failure(f"{doing} failed: {error}") from error


@contextmanager
def _kube(action: PlannedAction, doing: str) -> Iterator[None]:
    try:
        yield
    except ApiException as error:
        status = error.status or 0
        if status == 404:
            raise TargetNotFound.failure(f"Deployment {action.target} not found") from error
        if status in (401, 403):
            raise PermissionDenied.failure(
                f"{doing} {action.target} was refused: grant the worker access"
            ) from error
        if status in (400, 422):
            raise ActionError.failure(
                f"{doing} {action.target} was rejected as invalid: {error.reason}"
            ) from error
        raise KubernetesApiError.failure(f"{doing} {action.target} failed ({status}); retrying") from error
    except HTTPError as error:
        raise KubernetesUnreachable.failure(
            f"cannot reach the Kubernetes API while {doing} {action.target}"
        ) from error
