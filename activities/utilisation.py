"""The resource sweep's eyes: the fleet's inventory and 30 days of its utilisation, in a few queries.

Why it reads the way it does:

* **Batched, never per workload.** Four PromQL queries answer for the whole
  fleet at once, whatever its size: ``quantile_over_time(0.95, …[30d])``,
  ``max_over_time(…[30d])``, ``count_over_time(…[30d])`` for the length of the
  history, and one range query of daily maxima (30 points per series) for the
  rhythm that marks a periodic job. The inventory is one paginated
  ``DescribeInstances`` per region and one Deployment list.
* **Hourly series.** The loop reads one utilisation ratio per workload and
  resource, a recording rule evaluated hourly (``suture:utilisation:ratio1h``
  with labels ``kind``, ``scope``, ``name``, ``resource``; the README shows the
  rules that build it from DCGM, CloudWatch and cAdvisor series). One sample per
  hour makes ``count_over_time`` the hours of history, and keeps 30 days of
  10,000 workloads to a few million samples.
* **The fleet stays in the activity.** Classification (pure, in
  :mod:`policies.resource`) runs here, next to the data, so only candidates and
  counts travel through the workflow's history.

Errors: Prometheus or an inventory API being unreachable is retried; a query
Prometheus refuses, or a missing permission, is permanent and names the fix.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from botocore.exceptions import BotoCoreError, ClientError
from kubernetes.client import ApiClient, AppsV1Api
from kubernetes.client.exceptions import ApiException
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from temporalio import activity
from urllib3.exceptions import HTTPError

from policies.prices import PriceTable, load_price_table
from policies.queries import escape_string
from policies.resource import ResourcePolicy, judge_fleet
from suture.errors import (
    AwsUnavailable,
    KubernetesUnreachable,
    PermissionDenied,
    PrometheusQueryRejected,
    PrometheusUnavailable,
)
from suture.fleet import (
    ContainerRequests,
    FleetAnalysis,
    FleetQuery,
    UtilisationQuery,
    UtilisationSeen,
    UtilisationSummary,
    Workload,
    WorkloadKind,
)

UTILISATION_METRIC = "suture:utilisation:ratio1h"
WINDOW = "30d"
SAMPLE_INTERVAL_S = 3600.0
PAGE_SIZE = 1000
LISTED_STATES = ("pending", "running", "stopping", "stopped")
"""Instance states the inventory lists: every one not on its way out (terminated, shutting down)."""
"""Instances per DescribeInstances page: small enough that no single answer times out."""
ClientFactory = Callable[[str, str], Any]
"""``(service, region) -> boto3 client``."""


class FleetAnalyst:
    """The ``resource.analyse_fleet`` activity over Prometheus, EC2 and Kubernetes.

    Args:
        prometheus: the Prometheus holding the utilisation recording rule.
        ec2: makes an EC2 client for a region; None leaves instances out.
        regions: the regions whose instances form the fleet.
        kube_api: the Kubernetes API whose Deployments form the fleet; None leaves them out.
        prices: the price table (the shipped one by default).
        metric: the utilisation series to read.
    """

    def __init__(
        self,
        prometheus: PrometheusConnect,
        *,
        ec2: ClientFactory | None = None,
        regions: tuple[str, ...] = ("us-east-1",),
        kube_api: ApiClient | None = None,
        prices: PriceTable | None = None,
        metric: str = UTILISATION_METRIC,
    ) -> None:
        self._prometheus = prometheus
        self._ec2 = ec2
        self._regions = regions
        self._apps = AppsV1Api(kube_api) if kube_api is not None else None
        self.prices = prices or load_price_table()
        self.metric = metric

    @activity.defn(name="resource.analyse_fleet")
    def analyse_fleet(self, query: FleetQuery) -> FleetAnalysis:
        """Inventory the fleet, summarise its utilisation, and judge every workload under the policies."""
        policies = [ResourcePolicy.model_validate(policy) for policy in query.policies]
        burst = min((policy.rules.burst_above for policy in policies), default=0.6)
        at = time.time()
        workloads = self.inventory(query.scope)
        activity.heartbeat("inventory read")
        summaries, queries = self.summaries(at, burst)
        acted = frozenset(query.acted_today)
        judged = judge_fleet(workloads, summaries, policies, self.prices, query.sweep_id, acted)
        return FleetAnalysis(
            fleet_size=judged.fleet_size,
            tagged=judged.tagged,
            counts={str(key): value for key, value in judged.counts.items()},
            untagged=judged.untagged[:100],
            findings=judged.findings,
            acted_today=judged.acted_today,
            queries=queries,
            evaluated_at=datetime.fromtimestamp(at, UTC),
            price_table=self.prices.label,
        )

    @activity.defn(name="resource.utilisation_since")
    def utilisation_since(self, query: UtilisationQuery) -> UtilisationSeen:
        """One workload's 95th percentile of utilisation since ``query.since``, for a shadow score."""
        scope, _, name = query.key.partition("/")
        seconds = max(60, int(time.time() - query.since.timestamp()))
        labels = ",".join(
            f'{label}="{escape_string(value)}"'
            for label, value in (("scope", scope), ("name", name), ("resource", query.resource))
        )
        promql = f"quantile_over_time(0.95, {self.metric}{{{labels}}}[{seconds}s])"
        with _prometheus_errors(promql):
            result = self._prometheus.custom_query(promql)
        p95 = float(result[0]["value"][1]) if result else None
        return UtilisationSeen(p95=p95, query=promql)

    # --- utilisation ----------------------------------------------------------------------

    def summaries(
        self, at: float, burst_above: float
    ) -> tuple[dict[str, dict[str, UtilisationSummary]], list[str]]:
        """Workload key → resource → summary, for every series of the metric; and the queries run."""
        series = self.metric
        queries = {
            "p95": f"quantile_over_time(0.95, {series}[{WINDOW}])",
            "max": f"max_over_time({series}[{WINDOW}])",
            "count": f"count_over_time({series}[{WINDOW}])",
        }
        values = {name: self._instant(query, at) for name, query in queries.items()}
        daily = f"max_over_time({series}[1d])"
        burst_days = self._burst_days(daily, at, burst_above)
        found: dict[str, dict[str, UtilisationSummary]] = defaultdict(dict)
        for ident, p95 in values["p95"].items():
            key, resource = ident
            found[key][resource] = UtilisationSummary(
                key=key,
                resource=resource,
                p95=p95,
                max=values["max"].get(ident, p95),
                history_days=values["count"].get(ident, 0.0) * SAMPLE_INTERVAL_S / 86400.0,
                burst_days=burst_days.get(ident, 0.0),
            )
        return dict(found), [*queries.values(), f"{daily} (range, 30d at 1d steps)"]

    def _instant(self, query: str, at: float) -> dict[tuple[str, str], float]:
        with _prometheus_errors(query):
            result = self._prometheus.custom_query(query, params={"time": repr(at)})
        return {_ident(item["metric"]): float(item["value"][1]) for item in result}

    def _burst_days(self, query: str, at: float, burst_above: float) -> dict[tuple[str, str], float]:
        end = datetime.fromtimestamp(at, UTC)
        with _prometheus_errors(query):
            result = self._prometheus.custom_query_range(
                query, start_time=end - timedelta(days=29), end_time=end, step="86400"
            )
        shares = {}
        for item in result:
            days = [float(value) for _, value in item["values"]]
            if days:
                shares[_ident(item["metric"])] = sum(day >= burst_above for day in days) / len(days)
        return shares

    # --- inventory --------------------------------------------------------------------------

    def inventory(self, scope: dict[str, str]) -> list[Workload]:
        workloads: list[Workload] = []
        if self._ec2 is not None:
            for region in self._regions:
                workloads.extend(self._instances(region, scope))
        if self._apps is not None:
            workloads.extend(self._deployments(scope))
        return workloads

    def _instances(self, region: str, scope: dict[str, str]) -> Iterator[Workload]:
        assert self._ec2 is not None
        client = self._ec2("ec2", region)
        # Stopped instances stay in the fleet: the daily cap is a share of the fleet, and an
        # instance this loop stopped this morning still counts against today's cap.
        filters = [{"Name": "instance-state-name", "Values": list(LISTED_STATES)}]
        filters += [{"Name": f"tag:{key}", "Values": [value]} for key, value in sorted(scope.items())]
        with _aws_errors("listing instances", "ec2:DescribeInstances"):
            pages = client.get_paginator("describe_instances").paginate(
                Filters=filters, PaginationConfig={"PageSize": PAGE_SIZE}
            )
            for page in pages:
                if activity.in_activity():
                    activity.heartbeat(f"instances in {region}")
                yield from _instances_of(page, region)

    def _deployments(self, scope: dict[str, str]) -> Iterator[Workload]:
        assert self._apps is not None
        selector = ",".join(f"{key}={value}" for key, value in sorted(scope.items()))
        try:
            response = self._apps.list_deployment_for_all_namespaces(
                label_selector=selector or None, _preload_content=False
            )
        except ApiException as error:
            if error.status in (401, 403):
                raise PermissionDenied.failure(
                    "listing Deployments was refused: grant the worker apps/deployments list"
                ) from error
            raise KubernetesUnreachable.failure(f"listing Deployments failed: {error.reason}") from error
        except HTTPError as error:
            raise KubernetesUnreachable.failure(f"cannot reach the Kubernetes API: {error}") from error
        for item in json.loads(response.data)["items"]:  # type: ignore[attr-defined]
            yield deployment_workload(item)


def _instances_of(page: dict[str, Any], region: str) -> Iterator[Workload]:
    for reservation in page["Reservations"]:
        for instance in reservation["Instances"]:
            yield Workload(
                kind=WorkloadKind.EC2_INSTANCE,
                scope=reservation.get("OwnerId", ""),
                name=instance["InstanceId"],
                labels={tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])},
                region=region,
                instance_type=instance["InstanceType"],
                state=instance["State"]["Name"],
                created_at=instance.get("LaunchTime"),
            )


def deployment_workload(item: dict[str, Any]) -> Workload:
    """A Deployment as the sweep sees it: labels, replicas, requests per container."""
    metadata, spec = item["metadata"], item["spec"]
    containers = spec.get("template", {}).get("spec", {}).get("containers", [])
    created = metadata.get("creationTimestamp")
    return Workload(
        kind=WorkloadKind.DEPLOYMENT,
        scope=metadata.get("namespace", "default"),
        name=metadata["name"],
        labels=dict(metadata.get("labels") or {}),
        replicas=int(spec.get("replicas", 1)),
        containers=[
            ContainerRequests(
                name=container["name"],
                cpu_cores=cpu_cores(container.get("resources", {}).get("requests", {}).get("cpu", "0")),
                memory_gib=memory_gib(container.get("resources", {}).get("requests", {}).get("memory", "0")),
            )
            for container in containers
        ],
        created_at=datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None,
    )


_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_DECIMAL = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def cpu_cores(quantity: str | int | float) -> float:
    """A Kubernetes CPU quantity (``500m``, ``2``) in cores."""
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory_gib(quantity: str | int | float) -> float:
    """A Kubernetes memory quantity (``512Mi``, ``2Gi``, ``1G``, bytes) in GiB."""
    text = str(quantity)
    for suffix, factor in (*_BINARY.items(), *_DECIMAL.items()):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor / 2**30
    return float(text) / 2**30


def _ident(labels: dict[str, str]) -> tuple[str, str]:
    return f"{labels.get('scope', '')}/{labels.get('name', '')}", labels.get("resource", "cpu")


@contextmanager
def _prometheus_errors(query: str) -> Iterator[None]:
    try:
        yield
    except requests.RequestException as error:
        raise PrometheusUnavailable.failure(f"Prometheus is unreachable: {error}") from error
    except PrometheusApiClientException as error:
        if "400" in str(error) or "422" in str(error):
            raise PrometheusQueryRejected.failure(f"Prometheus refused {query!r}: {error}") from error
        raise PrometheusUnavailable.failure(f"{query!r} failed: {error}") from error


@contextmanager
def _aws_errors(doing: str, permission: str) -> Iterator[None]:
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("AccessDenied", "UnauthorizedOperation", "AccessDeniedException"):
            raise PermissionDenied.failure(
                f"{doing} was refused: grant the worker's identity {permission}"
            ) from error
        raise AwsUnavailable.failure(f"{doing} failed ({code}); retrying") from error
    except BotoCoreError as error:
        raise AwsUnavailable.failure(f"{doing} failed: {error}") from error
