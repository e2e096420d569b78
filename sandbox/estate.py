"""The drill estate: services whose Deployments react to what suture does to them.

The Kubernetes emulator stores objects and runs no controllers, so the estate
plays the Deployment controller against it, through the official client over
HTTP, the same way suture reaches it. Every pass it reads each Deployment's pod
template, finds or creates the ReplicaSet for it (one per template hash, named
``<deployment>-<hash>``, owned by the Deployment, labelled ``pod-template-hash``,
annotated ``deployment.kubernetes.io/revision``), scales the others to zero and
keeps pods for the current one. Rolling back to an older template reuses its
ReplicaSet and bumps its revision past the newest, as Kubernetes does, so a
rollout history read after a suture rollback looks as it would on a cluster.
Pods of a new rollout (including a restart through the
``kubectl.kubernetes.io/restartedAt`` template annotation) start afresh.

Like a controller fed by watches, a pass does the full work only when the
Deployment changed since the last one (its ``resourceVersion`` moved); between
changes a pass is one read per service. ReplicaSets and pods belong to the
estate alone, so nothing else makes them drift in the meantime.

What a service reports is computed at the instant it is asked
(:meth:`Estate.observe`) from what the controller last saw running: the current
image's :class:`Behaviour`, the pods and their ages, the load and the health of
the service's dependency. The estate itself never pushes metrics.

The sandbox's objects carry a few fields a real API server would not accept from
a client, so the history can lie in the past: backdated ``creationTimestamp`` on
the Deployment and its ReplicaSets, and pod ``status`` written at creation.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api, V1Deployment, V1Pod, V1ReplicaSet
from kubernetes.client.exceptions import ApiException

from sandbox.kube import format_time
from sandbox.model import Behaviour, Observation, ServiceSpec

log = logging.getLogger(__name__)

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
TEMPLATE_HASH = "pod-template-hash"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"

DEPENDENCY_DOWN = Behaviour(latency_p99_s=2.5, error_ratio=0.35)
"""The floor a failing dependency puts under every version: timeouts and errors."""
UNKNOWN_VERSION = Behaviour(latency_p99_s=0.1)
"""How an image the spec does not describe behaves: unremarkable."""
QUEUEING_SLOPE = 4.0
"""How fast p99 latency climbs once load exceeds capacity (per unit of saturation above 1)."""
NO_REPLICAS_LATENCY_S = 30.0

_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""The alphabet Kubernetes uses for generated names, free of vowels and look-alike digits."""


@dataclass(frozen=True)
class Running:
    """What the controller last saw running for one service."""

    image: str
    replicas: int
    started_at: datetime | None
    """Start of the oldest pod of the current ReplicaSet: the age of the pod set."""


@dataclass
class _Service:
    spec: ServiceSpec
    running: Running | None = None
    seen_version: str | None = None
    """The Deployment's resourceVersion after the last full pass, including the estate's own writes."""


class Estate:
    """Services of the drill estate and the controller that keeps their rollouts honest.

    Start it with ``async with Estate(api):`` (or :meth:`start`/:meth:`stop`) on
    any event loop; the Kubernetes calls run on worker threads, so the emulator
    may share that loop or run in a thread of its own.
    """

    def __init__(self, api: ApiClient, *, period_s: float = 0.2) -> None:
        self._cluster = _Cluster(api)
        self._period_s = period_s
        self._services: dict[tuple[str, str], _Service] = {}
        self._controller_lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the reconcile loop (one pass every ``period_s``)."""
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._reconcile_until_stopped(self._stopping))

    async def stop(self) -> None:
        """Stop the reconcile loop after the pass in progress, if any."""
        if self._task is None or self._stopping is None:
            return
        self._stopping.set()
        await self._task
        self._task = self._stopping = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- what drills do -----------------------------------------------------------------

    async def add_service(
        self,
        spec: ServiceSpec,
        *,
        rolled_out_ago: timedelta = timedelta(minutes=3),
        history_spacing: timedelta = timedelta(days=1),
    ) -> None:
        """Create the service's Deployment with its rollout history, one ReplicaSet per version.

        The current version (last of ``spec.history``) rolled out ``rolled_out_ago``
        ago and its pods started then; each older version is ``history_spacing``
        older than the next.
        """
        service = _Service(
            dataclasses.replace(spec, versions=dict(spec.versions), history=list(spec.history))
        )
        await asyncio.to_thread(self._install, service, rolled_out_ago, history_spacing)

    async def roll_out(self, namespace: str, name: str, image: str) -> None:
        """Deploy another image the way a CI job would (``kubectl set image``)."""
        await asyncio.to_thread(self._cluster.set_image, namespace, name, image)

    async def reconcile(self) -> None:
        """Run one controller pass now, e.g. to assert right after an action."""
        await asyncio.to_thread(self._reconcile_all)

    def set_dependency(self, namespace: str, name: str, healthy: bool) -> None:
        self._service(namespace, name).spec.dependency_healthy = healthy

    def set_load(self, namespace: str, name: str, load_rps: float) -> None:
        self._service(namespace, name).spec.load_rps = load_rps

    # --- what the exporter and drills read ----------------------------------------------

    def observe(self, namespace: str, name: str) -> Observation | None:
        """What the service's exporter reports now; None before the controller saw it run."""
        service = self._services.get((namespace, name))
        if service is None or service.running is None:
            return None
        return _observation(service.spec, service.running, datetime.now(UTC))

    def current_image(self, namespace: str, name: str) -> str | None:
        running = self._service(namespace, name).running
        return running.image if running else None

    def replicas(self, namespace: str, name: str) -> int | None:
        """Pods running for the current version, as the controller last saw them."""
        running = self._service(namespace, name).running
        return running.replicas if running else None

    def services(self) -> list[ServiceSpec]:
        return [service.spec for service in self._services.values()]

    # --- the controller -----------------------------------------------------------------

    async def _reconcile_until_stopped(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.reconcile()
            except Exception:  # a controller outlives API hiccups, as a real one does
                log.warning("estate reconcile pass failed; retrying", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._period_s)

    def _service(self, namespace: str, name: str) -> _Service:
        try:
            return self._services[(namespace, name)]
        except KeyError:
            raise KeyError(f"the estate has no service {namespace}/{name}; add_service() it first") from None

    def _install(self, service: _Service, rolled_out_ago: timedelta, spacing: timedelta) -> None:
        spec = service.spec
        current_at = datetime.now(UTC) - rolled_out_ago
        rollouts = _layout(spec.history, current_at, spacing)
        with self._controller_lock:
            deployment = self._cluster.create_deployment(
                deployment_manifest(spec, rollouts[-1].image, rollouts[0].created_at, rollouts[-1].revision)
            )
            for rollout in rollouts:
                replicas = spec.replicas if rollout is rollouts[-1] else 0
                replicaset = self._cluster.create_replicaset(
                    replicaset_manifest(deployment, _template(spec, rollout.image), rollout, replicas)
                )
            for _ in range(spec.replicas):
                self._cluster.create_pod(pod_manifest(replicaset, current_at))
            self._services[(spec.namespace, spec.name)] = service
            self._reconcile(service)

    def _reconcile_all(self) -> None:
        with self._controller_lock:
            for service in list(self._services.values()):
                self._reconcile(service)

    def _reconcile(self, service: _Service) -> None:
        deployment = self._cluster.deployment(service.spec.namespace, service.spec.name)
        if deployment is None:
            service.running, service.seen_version = None, None
            return
        version = deployment["metadata"].get("resourceVersion")
        if version is not None and version == service.seen_version:
            return
        owned = self._cluster.owned_replicasets(deployment)
        current = self._current_replicaset(deployment, owned)
        replicas = int(deployment["spec"].get("replicas", 1))
        for replicaset in owned:
            if _name(replicaset) != _name(current):
                self._cluster.scale_replicaset(replicaset, 0)
        self._cluster.scale_replicaset(current, replicas)
        pods = self._sync_pods(deployment, current, replicas)
        service.seen_version = self._cluster.record_rollout(deployment, _revision(current), len(pods))
        service.running = Running(
            image=_images(current["spec"]["template"])[0],
            replicas=len(pods),
            started_at=min((_pod_started(pod) for pod in pods), default=None),
        )

    def _current_replicaset(self, deployment: dict[str, Any], owned: list[dict[str, Any]]) -> dict[str, Any]:
        """The ReplicaSet of the Deployment's template: reused (and re-numbered) or created."""
        template = deployment["spec"]["template"]
        template_id = template_hash(template)
        newest = max((_revision(replicaset) for replicaset in owned), default=0)
        for replicaset in owned:
            if _labels(replicaset).get(TEMPLATE_HASH) == template_id:
                if _revision(replicaset) < newest:
                    return self._cluster.renumber(replicaset, newest + 1)
                return replicaset
        rollout = _Rollout(_images(template)[0], newest + 1, datetime.now(UTC))
        return self._cluster.create_replicaset(replicaset_manifest(deployment, template, rollout, 0))

    def _sync_pods(
        self, deployment: dict[str, Any], current: dict[str, Any], replicas: int
    ) -> list[dict[str, Any]]:
        pods = self._cluster.pods(deployment)
        kept = sorted((pod for pod in pods if _owned_by(pod, current)), key=_pod_started)
        for pod in [pod for pod in pods if not _owned_by(pod, current)] + kept[replicas:]:
            self._cluster.delete_pod(pod)
        kept = kept[:replicas]
        now = datetime.now(UTC)
        while len(kept) < replicas:
            kept.append(self._cluster.create_pod(pod_manifest(current, now)))
        return kept


# --- what a service reports ---------------------------------------------------------


def _observation(spec: ServiceSpec, running: Running, now: datetime) -> Observation:
    behaviour = spec.versions.get(running.image, UNKNOWN_VERSION)
    capacity = running.replicas * spec.capacity_rps_per_replica
    saturation = spec.load_rps / capacity if capacity else (math.inf if spec.load_rps else 0.0)
    latency = behaviour.latency_p99_s * (1 + QUEUEING_SLOPE * max(0.0, saturation - 1))
    errors = behaviour.error_ratio
    if running.replicas == 0:
        latency, errors = NO_REPLICAS_LATENCY_S, 1.0
    if not spec.dependency_healthy:
        latency = max(latency, DEPENDENCY_DOWN.latency_p99_s)
        errors = max(errors, DEPENDENCY_DOWN.error_ratio)
    age_s = (now - running.started_at).total_seconds() if running.started_at else 0.0
    return Observation(
        image=running.image,
        replicas=running.replicas,
        latency_p99_s=latency,
        error_ratio=min(errors, 1.0),
        memory_bytes=behaviour.base_memory_bytes + behaviour.memory_growth_bytes_per_s * max(age_s, 0.0),
        saturation_ratio=saturation,
    )


# --- manifests ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Rollout:
    image: str
    revision: int
    created_at: datetime


def _layout(history: list[str], current_at: datetime, spacing: timedelta) -> list[_Rollout]:
    """One rollout per distinct image, oldest first; a repeated image keeps its latest revision."""
    if not history:
        raise ValueError("a service needs at least one image in its history")
    rollouts: dict[str, _Rollout] = {}
    for index, image in enumerate(history):
        created_at = current_at - spacing * (len(history) - 1 - index)
        first_seen = rollouts[image].created_at if image in rollouts else created_at
        rollouts.pop(image, None)
        rollouts[image] = _Rollout(image, index + 1, first_seen)
    return list(rollouts.values())


def template_hash(template: Mapping[str, Any]) -> str:
    """A stable hash of a pod template, in the style of Kubernetes' ``pod-template-hash``."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(_HASH_ALPHABET[byte % len(_HASH_ALPHABET)] for byte in digest[:10])


def _template(spec: ServiceSpec, image: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {**spec.labels, "app": spec.name}},
        "spec": {"containers": [{"name": spec.name, "image": image, "ports": [{"containerPort": 8080}]}]},
    }


def deployment_manifest(spec: ServiceSpec, image: str, created_at: datetime, revision: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": {**spec.labels, "app": spec.name},
            "annotations": {REVISION: str(revision)},
            "creationTimestamp": format_time(created_at),
        },
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": {"app": spec.name}},
            "template": _template(spec, image),
        },
    }


def replicaset_manifest(
    deployment: Mapping[str, Any], template: Mapping[str, Any], rollout: _Rollout, replicas: int
) -> dict[str, Any]:
    template_id = template_hash(template)
    labels = {**_labels(template), TEMPLATE_HASH: template_id}
    meta = deployment["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{meta['name']}-{template_id}",
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": {REVISION: str(rollout.revision)},
            "creationTimestamp": format_time(rollout.created_at),
            "ownerReferences": [_owner(deployment)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {
                "matchLabels": {**deployment["spec"]["selector"]["matchLabels"], TEMPLATE_HASH: template_id}
            },
            "template": {
                **template,
                "metadata": {**template.get("metadata", {}), "labels": labels},
            },
        },
        "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas},
    }


def pod_manifest(replicaset: Mapping[str, Any], started_at: datetime) -> dict[str, Any]:
    template = replicaset["spec"]["template"]
    suffix = "".join(secrets.choice(_HASH_ALPHABET) for _ in range(5))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{_name(replicaset)}-{suffix}",
            "namespace": replicaset["metadata"]["namespace"],
            "labels": dict(_labels(template)),
            "annotations": dict(template.get("metadata", {}).get("annotations") or {}),
            "ownerReferences": [_owner(replicaset)],
        },
        "spec": template["spec"],
        "status": {
            "phase": "Running",
            "startTime": format_time(started_at),
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def _owner(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _owned_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    uid = owner["metadata"]["uid"]
    return any(
        ref.get("uid") == uid and ref.get("controller")
        for ref in obj["metadata"].get("ownerReferences") or []
    )


def _name(obj: Mapping[str, Any]) -> str:
    name: str = obj["metadata"]["name"]
    return name


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("labels") or {})


def _revision(obj: Mapping[str, Any]) -> int:
    return int((obj["metadata"].get("annotations") or {}).get(REVISION, 0))


def _images(template: Mapping[str, Any]) -> list[str]:
    return [container["image"] for container in template["spec"]["containers"]]


def _pod_started(pod: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(pod["status"]["startTime"])


def _selector(deployment: Mapping[str, Any]) -> str:
    match_labels = deployment["spec"]["selector"]["matchLabels"]
    return ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))


# --- the API calls the controller makes -----------------------------------------------


class _Cluster:
    """The controller's Kubernetes calls, on plain JSON so templates round-trip untouched."""

    def __init__(self, api: ApiClient) -> None:
        self._apps = AppsV1Api(api)
        self._core = CoreV1Api(api)

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _json(self._apps.read_namespaced_deployment(name, namespace, _preload_content=False))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def create_deployment(self, manifest: dict[str, Any]) -> dict[str, Any]:
        namespace = manifest["metadata"]["namespace"]
        body = V1Deployment.model_validate(manifest)
        return _json(self._apps.create_namespaced_deployment(namespace, body, _preload_content=False))

    def set_image(self, namespace: str, name: str, image: str) -> None:
        deployment = self.deployment(namespace, name)
        if deployment is None:
            raise KeyError(f"no Deployment {namespace}/{name}")
        containers = deployment["spec"]["template"]["spec"]["containers"]
        body = [
            {"op": "replace", "path": f"/spec/template/spec/containers/{index}/image", "value": image}
            for index in range(len(containers))
        ]
        self._apps.patch_namespaced_deployment(name, namespace, body, _preload_content=False)

    def record_rollout(self, deployment: dict[str, Any], revision: int, ready: int) -> str | None:
        """Write the revision annotation and the status; returns the Deployment's resourceVersion after."""
        meta = deployment["metadata"]
        version: str | None = meta.get("resourceVersion")
        if (meta.get("annotations") or {}).get(REVISION) != str(revision):
            body = {"metadata": {"annotations": {REVISION: str(revision)}}}
            response = self._apps.patch_namespaced_deployment(
                meta["name"], meta["namespace"], body, _preload_content=False
            )
            version = _json(response)["metadata"].get("resourceVersion")
        status = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": ready,
            "updatedReplicas": ready,
            "readyReplicas": ready,
            "availableReplicas": ready,
        }
        if {key: deployment.get("status", {}).get(key) for key in status} != status:
            response = self._apps.patch_namespaced_deployment_status(
                meta["name"], meta["namespace"], {"status": status}, _preload_content=False
            )
            version = _json(response)["metadata"].get("resourceVersion")
        return version

    def owned_replicasets(self, deployment: dict[str, Any]) -> list[dict[str, Any]]:
        namespace = deployment["metadata"]["namespace"]
        listing = _json(
            self._apps.list_namespaced_replica_set(
                namespace, label_selector=_selector(deployment), _preload_content=False
            )
        )
        return [replicaset for replicaset in listing["items"] if _owned_by(replicaset, deployment)]

    def create_replicaset(self, manifest: dict[str, Any]) -> dict[str, Any]:
        namespace = manifest["metadata"]["namespace"]
        body = V1ReplicaSet.model_validate(manifest)
        return _json(self._apps.create_namespaced_replica_set(namespace, body, _preload_content=False))

    def renumber(self, replicaset: dict[str, Any], revision: int) -> dict[str, Any]:
        """Give a reused ReplicaSet the next revision, remembering the ones it had."""
        annotations = replicaset["metadata"].get("annotations") or {}
        history = [part for part in annotations.get(REVISION_HISTORY, "").split(",") if part]
        history.append(str(_revision(replicaset)))
        body = {"metadata": {"annotations": {REVISION: str(revision), REVISION_HISTORY: ",".join(history)}}}
        meta = replicaset["metadata"]
        return _json(
            self._apps.patch_namespaced_replica_set(
                meta["name"], meta["namespace"], body, _preload_content=False
            )
        )

    def scale_replicaset(self, replicaset: dict[str, Any], replicas: int) -> None:
        meta = replicaset["metadata"]
        if replicaset["spec"].get("replicas") != replicas:
            body: dict[str, Any] = {"spec": {"replicas": replicas}}
            self._apps.patch_namespaced_replica_set(
                meta["name"], meta["namespace"], body, _preload_content=False
            )
        status = {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}
        if {key: (replicaset.get("status") or {}).get(key) for key in status} != status:
            self._apps.patch_namespaced_replica_set_status(
                meta["name"], meta["namespace"], {"status": status}, _preload_content=False
            )

    def pods(self, deployment: dict[str, Any]) -> list[dict[str, Any]]:
        namespace = deployment["metadata"]["namespace"]
        listing = _json(
            self._core.list_namespaced_pod(
                namespace, label_selector=_selector(deployment), _preload_content=False
            )
        )
        items: list[dict[str, Any]] = listing["items"]
        return items

    def create_pod(self, manifest: dict[str, Any]) -> dict[str, Any]:
        namespace = manifest["metadata"]["namespace"]
        return _json(
            self._core.create_namespaced_pod(
                namespace, V1Pod.model_validate(manifest), _preload_content=False
            )
        )

    def delete_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        try:
            self._core.delete_namespaced_pod(meta["name"], meta["namespace"], _preload_content=False)
        except ApiException as error:
            if error.status != 404:
                raise


def _json(response: Any) -> Any:
    return json.loads(response.data)
