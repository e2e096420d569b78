"""The dependency graph's reads of the world: refresh it, ask it, and correlate a storm.

A refresh reads all three sources (``dependencies.yaml``, the
``suture.dev/depends-on`` annotation of Deployments, request-rate series with
source and destination labels in Prometheus) and replaces the stored graph in
one transaction. A source that cannot be read is reported and skipped, so a
Prometheus outage leaves the declared and Kubernetes edges current instead of
emptying the graph; its edges are dropped only by a refresh that read it.

Correlation asks Prometheus which alerts of the same name fire now in the
namespace (``ALERTS``), the graph which upstreams they share, and Kubernetes
which of those rolled out recently. It decides nothing by itself: it names the
storm (a workflow ID derived from its root and the time its first alert became
active) and the run joins it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient, AppsV1Api
from kubernetes.client.exceptions import ApiException
from temporalio.exceptions import ApplicationError

from activities.kubernetes import KubernetesActions
from activities.prometheus import PrometheusProbe
from policies import graph as declared
from policies.actions.declaration import implements
from policies.graph import (
    DEPENDS_ON,
    Dependents,
    DependentsQuery,
    Edge,
    EdgeSource,
    GraphRefresh,
    GraphRefreshed,
    StormQuery,
    StormVerdict,
    load_declared_edges,
    merge_edges,
    parse_depends_on,
    storm_id,
)
from suture.errors import PolicyError
from suture.graph_store import GraphStore
from suture.models import Target

TRAFFIC_QUERY = (
    "sum by (source_workload_namespace, source_workload, destination_workload_namespace, "
    "destination_workload) (rate(istio_requests_total[1m])) > 0"
)
"""Request rate between workloads, as Istio labels it; ``SUTURE_GRAPH_TRAFFIC_QUERY`` overrides it."""
TRAFFIC_VARIABLE = "SUTURE_GRAPH_TRAFFIC_QUERY"
_SAFE_LABEL = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class GraphActivities:
    """The ``graph.*`` activities, over the store, Kubernetes and Prometheus."""

    def __init__(
        self,
        store: GraphStore,
        kube_api: ApiClient,
        prometheus: PrometheusProbe,
        policy_dirs: Sequence[Path],
        traffic_query: str | None = None,
    ) -> None:
        self._store = store
        self._apps = AppsV1Api(kube_api)
        self._kube = KubernetesActions(kube_api)
        self._prometheus = prometheus
        self._policy_dirs = list(policy_dirs)
        self._traffic_query = traffic_query or os.environ.get(TRAFFIC_VARIABLE) or TRAFFIC_QUERY

    @implements(declared.refresh_graph)
    def refresh(self, request: GraphRefresh) -> GraphRefreshed:
        """Read every source and store the merged graph; a source that fails is reported, not fatal."""
        now = datetime.now(UTC)
        stored = {edge_key(e): e for e in self._store.graph().edges}
        seen: list[Edge] = []
        counts: dict[str, int] = {}
        problems: list[str] = []
        for source, read in (
            (EdgeSource.DECLARED, lambda: load_declared_edges(self._policy_dirs, now)),
            (EdgeSource.KUBERNETES, lambda: self._annotated_edges(now)),
            (EdgeSource.TRAFFIC, lambda: self._traffic_edges(now)),
        ):
            try:
                found = read()
            except (ApplicationError, ApiException, PolicyError, OSError) as error:
                problems.append(f"{source}: {error}")
                seen += _kept_from(stored.values(), source)
                continue
            counts[str(source)] = len(found)
            seen += found
        edges = merge_edges(seen)
        self._store.replace(edges)
        return GraphRefreshed(edges=len(edges), by_source=counts, problems=problems)

    @implements(declared.dependents_of)
    def dependents(self, query: DependentsQuery) -> Dependents:
        graph = self._store.graph()
        return Dependents(
            service=query.service,
            dependents=graph.dependents(query.service),
            refreshed_at=graph.refreshed_at,
        )

    @implements(declared.correlate_storm)
    def correlate(self, query: StormQuery) -> StormVerdict:
        """Whether the alert is one of a storm, and the storm's root when one upstream explains it."""
        labels = query.alert.labels
        alertname, namespace = labels.get("alertname", ""), labels.get("namespace", "")
        if not (_SAFE_LABEL.match(alertname) and _SAFE_LABEL.match(namespace)):
            return StormVerdict(
                storm_id=None, reason="the alert's name or namespace cannot be queried safely"
            )
        firing = self._firing(alertname, namespace)
        members = sorted(firing)
        if len(members) < query.rule.min_alerts:
            return StormVerdict(
                storm_id=None,
                members=members,
                reason=f"{len(members)} {alertname} alerts fire in {namespace}, "
                f"fewer than the storm rule's {query.rule.min_alerts}",
            )
        graph = self._store.graph()
        since = min(firing.values())
        changed = self._changed_upstreams(graph.upstreams(query.service), query.rule.changed_within)
        shared = [
            (len([m for m in members if upstream in graph.upstreams(m)]), at, upstream, note)
            for upstream, (at, note) in changed.items()
        ]
        shared = [entry for entry in shared if entry[0] >= query.rule.min_alerts]
        if shared:
            covered, _at, upstream, note = max(shared)
            return StormVerdict(
                storm_id=storm_id(namespace, alertname, upstream, since, query.rule.bucket),
                upstream=upstream,
                upstream_change=note,
                members=[m for m in members if upstream in graph.upstreams(m)],
                reason=f"{covered} of {len(members)} {alertname} alerts call {upstream}, which {note}",
            )
        return StormVerdict(
            storm_id=storm_id(namespace, alertname, None, since, query.rule.bucket),
            members=members,
            reason=f"{len(members)} {alertname} alerts fire in {namespace} and no upstream they share "
            f"changed within {query.rule.changed_within:.0f}s",
        )

    # --- sources ---------------------------------------------------------------------------

    def _annotated_edges(self, now: datetime) -> list[Edge]:
        deployments = self._apps.list_deployment_for_all_namespaces(_preload_content=False)
        items = _json(deployments).get("items", [])
        edges = []
        for item in items:
            meta = item.get("metadata", {})
            value = (meta.get("annotations") or {}).get(DEPENDS_ON)
            if not value:
                continue
            caller = f"{meta.get('namespace', 'default')}/{meta['name']}"
            edges += [
                Edge(
                    source=caller,
                    target=callee,
                    sources=[EdgeSource.KUBERNETES],
                    last_seen=now,
                    detail=f"{DEPENDS_ON} on deployment {caller}",
                )
                for callee in parse_depends_on(meta.get("namespace", "default"), value)
            ]
        return edges

    def _traffic_edges(self, now: datetime) -> list[Edge]:
        samples, _at = self._prometheus.sample(self._traffic_query)
        edges = []
        for sample in samples:
            labels = sample.labels
            source, target = labels.get("source_workload"), labels.get("destination_workload")
            if not source or not target or source == "unknown":
                continue
            source_ns = labels.get("source_workload_namespace", "default")
            target_ns = labels.get("destination_workload_namespace", source_ns)
            edges.append(
                Edge(
                    source=f"{source_ns}/{source}",
                    target=f"{target_ns}/{target}",
                    sources=[EdgeSource.TRAFFIC],
                    last_seen=sample.at if sample.at.tzinfo else now,
                    detail=f"{sample.value:.3g} req/s observed",
                )
            )
        return edges

    # --- correlation ----------------------------------------------------------------------

    def _firing(self, alertname: str, namespace: str) -> dict[str, datetime]:
        """Services with the alert firing now, and when each became active."""
        matchers = f'alertname="{alertname}",namespace="{namespace}"'
        firing, _at = self._prometheus.sample(f'ALERTS{{{matchers},alertstate="firing"}}')
        active, _at = self._prometheus.sample(f"ALERTS_FOR_STATE{{{matchers}}}")
        since = {_service(s.labels): datetime.fromtimestamp(s.value, UTC) for s in active}
        now = datetime.now(UTC)
        return {
            _service(s.labels): since.get(_service(s.labels), now)
            for s in firing
            if s.labels.get("service") or s.labels.get("deployment")
        }

    def _changed_upstreams(self, upstreams: list[str], within_s: float) -> dict[str, tuple[datetime, str]]:
        """The upstreams whose current revision rolled out within ``within_s``, with when."""
        horizon = datetime.now(UTC) - timedelta(seconds=within_s)
        changed = {}
        for upstream in upstreams:
            namespace, _, name = upstream.partition("/")
            try:
                history = self._kube.rollout_history(Target(kind="deployment", scope=namespace, name=name))
            except ApplicationError:
                continue  # not a Deployment suture can read: it cannot be the root we act on
            current = next((r for r in history.rollouts if r.revision == history.current_revision), None)
            if current is not None and current.created_at >= horizon:
                images = ", ".join(current.images)
                changed[upstream] = (
                    current.created_at,
                    f"rolled out revision {current.revision} ({images}) at "
                    f"{current.created_at.isoformat(timespec='seconds')}",
                )
        return changed


def edge_key(edge: Edge) -> tuple[str, str]:
    return (edge.source, edge.target)


def _kept_from(stored: Any, source: EdgeSource) -> list[Edge]:
    """The stored edges a source reported last time: kept while the source cannot be read."""
    return [
        Edge(source=e.source, target=e.target, sources=[source], last_seen=e.last_seen, detail=e.detail)
        for e in stored
        if source in e.sources
    ]


def _service(labels: Any) -> str:
    return f"{labels.get('namespace', '-')}/{labels.get('service') or labels.get('deployment', '-')}"


def _json(response: Any) -> Any:
    import json

    return json.loads(response.data)
