# mypy: disable-error-code="empty-body"
# The activity signatures below are declarations; their bodies never run.
"""The dependency graph: which service calls which, and how suture knows.

Diagnosis without the graph is guesswork: six services alerting at once look
like six incidents unless something says they all call the same upstream. An
edge comes from one of three sources, and keeps each one that saw it:

* ``declared``: ``dependencies.yaml`` beside the policies, written by people;
* ``kubernetes``: the ``suture.dev/depends-on`` annotation of a Deployment;
* ``traffic``: request-rate series with source and destination labels in
  Prometheus, as service meshes export them.

The graph is refreshed on a schedule and stored; runs read the stored graph, so
an alert never waits on three reads of the world. This module is pure: models,
the ``dependencies.yaml`` loader (errors name ``file:line``, like policies) and
the questions a loop asks (dependents, changed upstreams shared by a storm).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from policies.actions.declaration import Permissions, RbacRule, declare
from policies.models import StormRule
from suture.errors import PolicyError
from suture.models import AlertNotice, Loop

DEPENDENCIES_FILE = "dependencies.yaml"
"""The declared edges, in a policy folder; the policy loader leaves this file alone."""
DEPENDS_ON = "suture.dev/depends-on"
"""A Deployment annotation naming what it calls: ``"payments,inventory"`` (same namespace) or ``ns/name``."""
_SERVICE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class EdgeSource(StrEnum):
    """Where an edge was seen."""

    DECLARED = "declared"
    KUBERNETES = "kubernetes"
    TRAFFIC = "traffic"


class Edge(BaseModel):
    """``source`` calls ``target`` (both ``namespace/name``), as seen by ``sources``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    target: str
    sources: list[EdgeSource]
    last_seen: datetime
    detail: str = ""


class DependencyGraph(BaseModel):
    """Every known edge; the questions below are answered from it without I/O."""

    model_config = ConfigDict(extra="forbid")

    edges: list[Edge] = []
    refreshed_at: datetime | None = None

    def dependents(self, service: str) -> list[str]:
        """Every service that calls ``service``, directly or through others, nearest first."""
        callers: dict[str, list[str]] = {}
        for edge in self.edges:
            callers.setdefault(edge.target, []).append(edge.source)
        found: list[str] = []
        frontier = [service]
        while frontier:
            nxt = [c for s in frontier for c in sorted(callers.get(s, [])) if c not in found and c != service]
            found += list(dict.fromkeys(nxt))
            frontier = list(dict.fromkeys(nxt))
        return found

    def upstreams(self, service: str) -> list[str]:
        """What ``service`` calls directly."""
        return sorted({edge.target for edge in self.edges if edge.source == service})

    def around(self, service: str) -> DependencyGraph:
        """The edges that touch ``service``, its dependents or what it calls."""
        near = {service, *self.dependents(service), *self.upstreams(service)}
        return DependencyGraph(
            edges=[e for e in self.edges if e.source in near and e.target in near],
            refreshed_at=self.refreshed_at,
        )


def merge_edges(seen: Iterable[Edge]) -> list[Edge]:
    """One edge per (source, target), with every source that saw it and the latest sighting."""
    merged: dict[tuple[str, str], Edge] = {}
    for edge in seen:
        key = (edge.source, edge.target)
        earlier = merged.get(key)
        if earlier is None:
            merged[key] = edge
            continue
        merged[key] = Edge(
            source=edge.source,
            target=edge.target,
            sources=sorted({*earlier.sources, *edge.sources}),
            last_seen=max(earlier.last_seen, edge.last_seen),
            detail="; ".join(part for part in (earlier.detail, edge.detail) if part),
        )
    return sorted(merged.values(), key=lambda e: (e.source, e.target))


def parse_depends_on(namespace: str, value: str) -> list[str]:
    """The services a ``suture.dev/depends-on`` annotation names, as ``namespace/name``."""
    names = [part.strip() for part in value.split(",") if part.strip()]
    return [name if "/" in name else f"{namespace}/{name}" for name in names]


# --- what runs ask, and the activities that answer -----------------------------------------


class GraphRefresh(BaseModel):
    """Input of a refresh (nothing yet: every source is read)."""

    model_config = ConfigDict(extra="forbid")


class GraphRefreshed(BaseModel):
    """What a refresh stored: how many edges, how many each source reported, what failed."""

    model_config = ConfigDict(extra="forbid")

    edges: int
    by_source: dict[str, int]
    problems: list[str] = []


class DependentsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service: str
    """``namespace/name``."""


class Dependents(BaseModel):
    """Who is affected when ``service`` is touched, per the stored graph."""

    model_config = ConfigDict(extra="forbid")

    service: str
    dependents: list[str]
    refreshed_at: datetime | None = None


class StormQuery(BaseModel):
    """Is this alert part of a storm? Asked by a run whose policy has a ``storm`` rule."""

    model_config = ConfigDict(extra="forbid")

    alert: AlertNotice
    service: str
    rule: StormRule


class StormVerdict(BaseModel):
    """The storm this alert belongs to (``storm_id``), its root when clear, and the services alerting."""

    model_config = ConfigDict(extra="forbid")

    storm_id: str | None
    upstream: str | None = None
    upstream_change: str = ""
    members: list[str] = []
    reason: str


class StormInput(BaseModel):
    """What starts a storm run: its identity, the root if one was found, and the first alert."""

    model_config = ConfigDict(extra="forbid")

    storm_id: str
    upstream: str | None
    upstream_change: str = ""
    members: list[str]
    first: AlertNotice
    gather_s: float


READ_WORKLOADS = RbacRule(("apps",), ("deployments", "replicasets"), ("get", "list"))


@declare(
    "graph.refresh",
    timeout=timedelta(seconds=60),
    permissions=Permissions(rbac=(READ_WORKLOADS,)),
    loop=Loop.RELIABILITY,
)
def refresh_graph(request: GraphRefresh) -> GraphRefreshed: ...


@declare("graph.dependents", timeout=timedelta(seconds=10), loop=Loop.RELIABILITY)
def dependents_of(query: DependentsQuery) -> Dependents: ...


@declare(
    "graph.correlate",
    timeout=timedelta(seconds=30),
    permissions=Permissions(rbac=(READ_WORKLOADS,)),
    loop=Loop.RELIABILITY,
)
def correlate_storm(query: StormQuery) -> StormVerdict: ...


def storm_id(namespace: str, alertname: str, upstream: str | None, since: datetime, bucket_s: float) -> str:
    """The storm's workflow ID: the same for every alert of one storm, so it starts once."""
    bucket = int(since.timestamp() // max(bucket_s, 1.0))
    root = upstream.replace("/", ".") if upstream else "unclear"
    return f"storm-{namespace}-{alertname}-{root}-{bucket}"


# --- dependencies.yaml ------------------------------------------------------------------


class DeclaredService(BaseModel):
    """One service of ``dependencies.yaml`` and what it calls."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_SERVICE, description="namespace/name")
    calls: list[str] = Field(default=[], description="namespace/name of each service it calls")


class DependenciesFile(BaseModel):
    """``services:``, a list of services with what each calls."""

    model_config = ConfigDict(extra="forbid")

    services: list[DeclaredService]


class InvalidDependencies(PolicyError):
    """``dependencies.yaml`` does not validate; the message names ``file:line``."""


def load_declared_edges(directories: Iterable[Path], now: datetime) -> list[Edge]:
    """The edges declared in the ``dependencies.yaml`` of each folder that has one.

    Raises:
        InvalidDependencies: naming ``file:line`` of every problem.
    """
    edges: list[Edge] = []
    for directory in directories:
        path = Path(directory) / DEPENDENCIES_FILE
        if path.is_file():
            edges += _declared_in(path, now)
    return edges


def _declared_in(path: Path, now: datetime) -> list[Edge]:
    text = path.read_text(encoding="utf-8")
    try:
        tree = yaml.compose(text)
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise InvalidDependencies(f"{where}: not valid YAML") from None
    try:
        declared = DependenciesFile.model_validate(document)
    except ValidationError as error:
        problems = [
            f"{path}:{_line_of(tree, found['loc'])}: {'.'.join(map(str, found['loc']))}: {_message(found)}"
            for found in error.errors()
        ]
        raise InvalidDependencies("\n".join(problems)) from None
    problems = [
        f"{path}:{_line_of(tree, ('services', index, 'calls', call_index))}: {callee!r} is not namespace/name"
        for index, service in enumerate(declared.services)
        for call_index, callee in enumerate(service.calls)
        if "/" not in callee
    ]
    if problems:
        raise InvalidDependencies("\n".join(problems))
    return [
        Edge(
            source=service.name,
            target=callee,
            sources=[EdgeSource.DECLARED],
            last_seen=now,
            detail=path.name,
        )
        for service in declared.services
        for callee in service.calls
    ]


def _message(found: Any) -> str:
    if found["type"] == "extra_forbidden":
        return f"unknown key {found['loc'][-1]!r} (a typo? unknown keys are refused)"
    return str(found["msg"])


def _line_of(node: yaml.Node | None, loc: Iterable[str | int]) -> int:
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next(((k, v) for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = (node.value[part], node.value[part])
        if child is None:
            break
        line, node = child[0].start_mark.line + 1, child[1]
    return line
