"""The Kubernetes API the drills run against: kmock's emulator, served on loopback.

suture's Kubernetes activities are the code that runs against a real cluster, so
the sandbox does not fake the client: it serves an API over HTTP and the official
``kubernetes`` client talks to it unchanged (:meth:`KubeEmulator.api_client`).

kmock 0.8 keeps objects as JSON in memory and runs no controllers (the estate
plays the Deployment controller). Its PATCH treats a JSON object body as a JSON
merge patch (sub-objects merged, lists and scalars overwritten, ``null`` deletes
a key) whatever the content type, where a real API server applies a strategic
merge patch; a JSON array body is applied as an RFC 6902 JSON Patch, which means
the same thing on both. Code that must end with an exact pod template therefore
replaces it with a JSON Patch rather than merging it. Out of the box kmock also
answers PUT with 404, serves a subresource as the whole object, ignores label
selectors and assigns no server-side metadata; :class:`SandboxApiServer` closes
those gaps so that rollout code which is wrong on a real cluster fails here too:

* PUT replaces an object, refusing a stale ``metadata.resourceVersion`` (409);
* ``<resource>/<name>/scale`` reads and writes an ``autoscaling/v1`` Scale that
  only carries ``spec.replicas``, as on a real cluster;
* list requests honour ``labelSelector``;
* ``SelfSubjectAccessReview`` is answered (allowed, unless a drill denies a verb in
  :attr:`SandboxApiServer.denied`), so the readiness checks ask the same API they
  ask a real cluster;
* (not closed) ``/api/v1/namespaces`` cannot be served: kmock reads the word
  ``namespaces`` as the start of a namespaced path, so Namespace objects do not exist;
* the server sets ``uid``, ``resourceVersion`` and ``generation`` (bumped when the
  spec changes), and ``creationTimestamp`` unless the creator sent one. A real
  server ignores a client's creation time; the estate relies on it to lay out a
  rollout history that happened in the past.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import re
import socket
import threading
import uuid
from collections.abc import Coroutine, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp.web
import attrs
import jsonpatch
import kmock
from kmock._internal.k8s import KubernetesObjectConflictError
from kubernetes.client import ApiClient, Configuration

from workers.providers import KUBE_CONNECTIONS

LOOPBACK = "127.0.0.1"


def client_for(url: str) -> ApiClient:
    """An official client for the emulator at ``url``, keeping as many connections as the worker's."""
    configuration = Configuration(host=url)
    configuration.connection_pool_maxsize = KUBE_CONNECTIONS
    return ApiClient(configuration)


REQUEST_LOG_LIMIT = 50
"""How many recent requests stay recorded for assertions.

kmock matches each request against each reaction by walking the whole request
log, so a request costs time in proportion to the log's length: a drill session
left with kmock's unbounded log slows down by the minute.
"""

RESOURCES: dict[str, kmock.ResourceInfo] = {
    "apps/v1/deployments": kmock.ResourceInfo(
        kind="Deployment", namespaced=True, subresources={"scale", "status"}
    ),
    "apps/v1/replicasets": kmock.ResourceInfo(
        kind="ReplicaSet", namespaced=True, subresources={"scale", "status"}
    ),
    "v1/pods": kmock.ResourceInfo(kind="Pod", namespaced=True, subresources={"status"}),
}
"""Declared up front so that listing a resource with no objects yet answers an empty list, not 404."""

_Result = TypeVar("_Result")


@attrs.define(kw_only=True)
class SandboxApiServer(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator with the API semantics rollout code depends on."""

    _versions: int = attrs.field(default=0, init=False)
    denied: set[tuple[str, str, str, str]] = attrs.field(factory=set, init=False)
    """(group, resource, verb, namespace) the worker's identity lacks; SelfSubjectAccessReview says so."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for resource, info in RESOURCES.items():
            self.resources[resource] = info

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        del self._requests[:-REQUEST_LOG_LIMIT]
        if str(request.url.path).endswith("/selfsubjectaccessreviews"):
            return self._review_access(request)
        if request.resource is not None and request.name is not None:
            if request.subresource == "scale":
                return await self._serve_scale(request)
            if request.method == kmock.method.PUT:
                return await self._serve_replace(request)
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            self._stamp_created(request.data)
        return await super()._handle(request)

    def _review_access(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """Answer a SelfSubjectAccessReview as an API server with RBAC would.

        Everything is allowed but what :attr:`denied` lists; a denial in one
        namespace also denies the cluster-wide question, as RBAC does.
        """
        review = request.data if isinstance(request.data, dict) else {}
        asked = review.get("spec", {}).get("resourceAttributes", {})
        resource = asked.get("resource", "")
        if asked.get("subresource"):
            resource += "/" + asked["subresource"]
        namespace = asked.get("namespace") or ""
        denied = any(
            (group, name, verb) == (asked.get("group", ""), resource, asked.get("verb", ""))
            and (not namespace or where == namespace)
            for group, name, verb, where in self.denied
        )
        review["status"] = {"allowed": not denied, **({"reason": "denied by the sandbox"} if denied else {})}
        return aiohttp.web.json_response(review, status=201)

    async def _serve_list(self, request: kmock.Request) -> Any:
        payload: Any = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector:
            payload["items"] = [
                item for item in payload["items"] if selector_matches(selector, _labels(item))
            ]
        return payload

    async def _serve_update(self, request: kmock.Request) -> Any:
        key: Any = (request.resource, request.namespace, request.name)
        async with self._lock:
            if key in self._objects and not self._objects[key].deleted:
                self._stamp_updated(self._objects[key])
        return await super()._serve_update(request)

    async def _serve_replace(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        body = request.data if isinstance(request.data, dict) else {}
        async with self._lock:
            obj = self._live(request)
            current = obj.raw
            sent = body.get("metadata", {}).get("resourceVersion")
            if sent and sent != current["metadata"].get("resourceVersion"):
                raise KubernetesObjectConflictError(
                    reason="Conflict",
                    message="the object has been modified; please apply your changes to the latest version",
                )
            if request.subresource == "status":
                replaced = {**current, "status": body.get("status")}
            elif request.subresource is None:
                replaced = _replacement(current, body)
            else:
                raise kmock.KubernetesEndpointNotFoundError()
            obj.history.append(replaced)
            await self._modified(request, obj)
            return aiohttp.web.json_response(obj.raw)

    async def _serve_scale(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        async with self._lock:
            obj = self._live(request)
            scale = _scale_of(obj.raw)
            if request.method in (kmock.method.PATCH, kmock.method.PUT):
                replicas = _requested_replicas(request.data, scale)
                if replicas != scale["spec"]["replicas"]:
                    obj.patch({"spec": {"replicas": replicas}})
                    await self._modified(request, obj)
                    scale = _scale_of(obj.raw)
            elif request.method != kmock.method.GET:
                raise kmock.KubernetesError(
                    status=405, reason="MethodNotAllowed", message="scale: get, patch, put"
                )
            return aiohttp.web.json_response(scale)

    def _live(self, request: kmock.Request) -> kmock.Object:
        key: Any = (request.resource, request.namespace, request.name)
        if key not in self._objects or self._objects[key].deleted:
            raise kmock.KubernetesObjectNotFoundError()
        obj: kmock.Object = self._objects[key]
        return obj

    async def _modified(self, request: kmock.Request, obj: kmock.Object) -> None:
        """Stamp a change kmock did not make itself and tell the watchers, as kmock does for its own."""
        self._stamp_updated(obj)
        if request.resource is not None:
            await self._buses[request.resource].put({"type": "MODIFIED", "object": obj.raw})

    def _next_version(self) -> str:
        self._versions += 1
        return str(self._versions)

    def _stamp_created(self, data: dict[str, Any]) -> None:
        meta = data.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", format_time(datetime.now(UTC)))
        meta["resourceVersion"] = self._next_version()
        meta["generation"] = 1

    def _stamp_updated(self, obj: kmock.Object) -> None:
        versions = [version for version in obj.history if version is not None]
        before = versions[-2].raw if len(versions) > 1 else {}
        meta = dict(obj.raw.get("metadata", {}))
        generation = before.get("metadata", {}).get("generation", 1)
        meta["generation"] = generation + 1 if before.get("spec") != obj.raw.get("spec") else generation
        meta["resourceVersion"] = self._next_version()
        obj["metadata"] = meta


class KubeEmulator:
    """The sandbox's Kubernetes API server on a free loopback port.

    Serve it on the running event loop (``async with KubeEmulator() as kube``) or
    on a background thread with its own loop (``with KubeEmulator() as kube``).
    Either way, clients reach it over HTTP at :attr:`url`.
    """

    def __init__(self, host: str = LOOPBACK, port: int = 0) -> None:
        self._host, self._requested_port = host, port
        self._server: SandboxApiServer | None = None
        self._runner: aiohttp.web.ServerRunner | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the Kubernetes emulator is not serving yet; start it first")
        return f"http://{self._host}:{self._port}"

    @property
    def server(self) -> SandboxApiServer:
        """The emulator itself: its in-memory ``objects`` are safe to touch only on its loop."""
        if self._server is None:
            raise RuntimeError("the Kubernetes emulator is not serving yet; start it first")
        return self._server

    def api_client(self) -> ApiClient:
        """A fresh official client configured for this server. The caller closes it."""
        return client_for(self.url)

    async def start(self) -> None:
        """Serve on the running event loop until :meth:`stop`."""
        server = SandboxApiServer()
        await server.__aenter__()
        runner = aiohttp.web.ServerRunner(aiohttp.web.Server(server), handle_signals=False)
        await runner.setup()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((self._host, self._requested_port))
        await aiohttp.web.SockSite(runner, listener).start()
        self._server, self._runner = server, runner
        self._port = listener.getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._server is not None:
            await self._server.__aexit__(None, None, None)
        self._server = self._runner = self._port = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def start_in_thread(self) -> Self:
        """Serve from a daemon thread running its own event loop; returns once it listens."""
        loop = asyncio.new_event_loop()
        started = concurrent.futures.Future[None]()
        self._loop = loop
        self._thread = threading.Thread(target=self._serve_thread, args=(loop, started), daemon=True)
        self._thread.name = "kube-emulator"
        self._thread.start()
        started.result(timeout=30)
        return self

    def stop_in_thread(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self.submit(self.stop()).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop = self._thread = None

    def submit(self, coroutine: Coroutine[Any, Any, _Result]) -> concurrent.futures.Future[_Result]:
        """Run a coroutine on the emulator's thread, e.g. an estate that shares its loop."""
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("submit() needs the emulator running in its thread (start_in_thread)")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def __enter__(self) -> Self:
        return self.start_in_thread()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_in_thread()

    def _serve_thread(
        self, loop: asyncio.AbstractEventLoop, started: concurrent.futures.Future[None]
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.start())
        except BaseException as error:
            started.set_exception(error)
            loop.close()
            return
        started.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.close()


# --- API semantics kmock leaves out ---------------------------------------------------

_SERVER_METADATA = ("uid", "creationTimestamp", "generation", "resourceVersion")
_REQUIREMENT = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[\w./-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[\w.-]*)|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


def format_time(moment: datetime) -> str:
    """Kubernetes' wire format for timestamps (RFC 3339, seconds, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Whether labels satisfy a label selector string (``a=b,c!=d,e in (f,g),!h``).

    Raises:
        kmock.KubernetesError: 400 for a selector that does not parse, as a real server answers.
    """
    return all(_requirement_holds(part, labels) for part in _split_requirements(selector))


def _split_requirements(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [part for part in [*parts, current] if part.strip()]


def _requirement_holds(requirement: str, labels: Mapping[str, str]) -> bool:
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise kmock.KubernetesError(
            status=400, reason="BadRequest", message=f"bad label selector: {requirement!r}"
        )
    key, present = match["key"], match["key"] in labels
    if match["neg"]:
        return not present
    if match["op"]:
        equal = present and labels[key] == match["value"]
        return not equal if match["op"] == "!=" else equal
    if match["setop"]:
        inside = present and labels[key] in {value.strip() for value in match["values"].split(",")}
        return not inside if match["setop"] == "notin" else inside
    return present


def _labels(item: Mapping[str, Any]) -> Mapping[str, str]:
    labels: Mapping[str, str] = item.get("metadata", {}).get("labels") or {}
    return labels


def _replacement(current: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
    """What PUT stores: the body, keeping server-owned metadata and the status."""
    replaced = copy.deepcopy(dict(body))
    meta = replaced.setdefault("metadata", {})
    for field in _SERVER_METADATA:
        if field in current.get("metadata", {}):
            meta[field] = current["metadata"][field]
    if "status" in current:
        replaced["status"] = current["status"]
    return replaced


def _scale_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata", {})
    match_labels = obj.get("spec", {}).get("selector", {}).get("matchLabels", {})
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {key: meta[key] for key in ("name", "namespace", *_SERVER_METADATA) if key in meta},
        "spec": {"replicas": obj.get("spec", {}).get("replicas", 1)},
        "status": {
            "replicas": obj.get("status", {}).get("replicas", 0),
            "selector": ",".join(f"{key}={value}" for key, value in sorted(match_labels.items())),
        },
    }


def _requested_replicas(data: Any, scale: dict[str, Any]) -> int:
    try:
        if isinstance(data, list):
            wanted = jsonpatch.apply_patch(scale, data)["spec"]["replicas"]
        else:
            wanted = (data or {}).get("spec", {}).get("replicas", scale["spec"]["replicas"])
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError, AttributeError) as error:
        raise kmock.KubernetesError(
            status=422, reason="Invalid", message=f"bad scale request: {error}"
        ) from error
    if not isinstance(wanted, int) or isinstance(wanted, bool) or wanted < 0:
        raise kmock.KubernetesError(
            status=422,
            reason="Invalid",
            message=f"spec.replicas must be a non-negative integer, not {wanted!r}",
        )
    return wanted
