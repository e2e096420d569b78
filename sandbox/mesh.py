"""What the dependency graph reads from the estate, besides ``sandbox/graph/dependencies.yaml``.

A service's Deployment names what it calls in its ``suture.dev/depends-on``
annotation (:func:`annotate_depends_on`), and the mesh reports the calls it sees
as ``istio_requests_total`` (:func:`mesh_of` gives the stack's one mesh exporter;
:meth:`Mesh.call` adds an edge to it). :func:`refresh_graph_until` refreshes the
stored graph through Temporal, as its Schedule does, until the edges a drill
builds on are there: a traffic edge needs two scrapes before ``rate()`` sees it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from typing import Any

from sandbox.stack import Stack

MESH_RPS = 5.0
"""Requests per second the mesh reports for each call edge."""


class Mesh:
    """The call edges the mesh exporter reports, ``{("ns/caller", "ns/callee"): rps}``."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], float] = {}
        self.exporter: Any = None

    def call(self, caller: str, callee: str, rps: float = MESH_RPS) -> None:
        self.calls[(caller, callee)] = rps


_MESHES: dict[int, Mesh] = {}


def mesh_of(stack: Stack) -> Mesh:
    """The stack's mesh, its exporter started and scraped the first time it is asked for."""
    from sandbox.exporter import TrafficExporter

    mesh = _MESHES.get(id(stack))
    if mesh is None:
        mesh = _MESHES[id(stack)] = Mesh()
        mesh.exporter = TrafficExporter(lambda: dict(mesh.calls)).start()
        stack.monitoring.add_target(mesh.exporter.address, {"job": "mesh"})

        async def stop() -> None:
            _MESHES.pop(id(stack), None)
            await asyncio.to_thread(mesh.exporter.stop)

        stack.on_stop(stop)
    return mesh


async def annotate_depends_on(stack: Stack, namespace: str, name: str, calls: Iterable[str]) -> None:
    """Write the ``suture.dev/depends-on`` annotation on a Deployment of the estate."""
    from kubernetes.client import AppsV1Api

    from policies.graph import DEPENDS_ON

    body = {"metadata": {"annotations": {DEPENDS_ON: ",".join(calls)}}}
    apps = AppsV1Api(stack.kube_api)
    await asyncio.to_thread(apps.patch_namespaced_deployment, name, namespace, body, _preload_content=False)


async def refresh_graph_until(
    stack: Stack, wanted: Iterable[tuple[str, str, str]], timeout_s: float = 60.0
) -> Any:
    """Refresh the graph until it holds every ``(caller, callee, source)``; the stored graph.

    Raises:
        TimeoutError: an edge never showed up (the message names them).
    """
    from policies.graph import GraphRefresh, GraphRefreshed
    from suture.graph_store import GraphStore

    wanted = set(wanted)
    deadline = time.monotonic() + timeout_s
    while True:
        await stack.client.execute_workflow(
            "GraphRefresher",
            GraphRefresh(),
            id=f"graph-refresh-{uuid.uuid4().hex[:12]}",
            task_queue=stack.task_queue,
            result_type=GraphRefreshed,
        )
        graph = await asyncio.to_thread(lambda: GraphStore(stack.store.engine).graph())
        seen = {(e.source, e.target, str(source)) for e in graph.edges for source in e.sources}
        missing = wanted - seen
        if not missing:
            return graph
        if time.monotonic() > deadline:
            raise TimeoutError(f"the dependency graph never showed {sorted(missing)}")
        await asyncio.sleep(1.0)
