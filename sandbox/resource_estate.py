"""The resource drills' estate: fleets of EC2 instances in moto and Deployments in the emulator.

Each resource drill owns one fleet, told apart by the ``fleet`` tag (label on a
Deployment), and sweeps only that fleet, so the drills run side by side on one
stack without counting each other's workloads against the daily cap. Every
workload gets 30 days of hourly utilisation history, written into Prometheus's
TSDB before Prometheus starts (:mod:`sandbox.history`); the series are keyed by
the instance IDs moto assigned, as a production recording rule keys them by the
real ones, so the estate is seeded first and the history second.

Fleets are sized so that the 5% daily cap leaves room for exactly what each
drill expects to see acted on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient, AppsV1Api

from sandbox.history import Series, Shape, backfill, busy, idle, nightly

SANDBOX_AMI = "ami-12c6146b"
ACCOUNT = "123456789012"


@dataclass(frozen=True)
class Group:
    """Some identical workloads of a fleet: how many, what they are, how they are used."""

    prefix: str
    count: int
    tags: dict[str, str]
    shape: Shape
    instance_type: str = ""
    """Set for EC2 instances; empty means a Deployment."""
    resource: str = "cpu"
    days: float = 31
    replicas: int = 3
    cpu: str = "4"
    memory: str = "8Gi"
    memory_shape: Shape | None = None


GPU_DEV = {"env": "dev", "owner": "ml-research"}
GPU_PROD = {"env": "production", "owner": "ml-serving"}
WEB = {"env": "staging", "owner": "web-team"}

FLEETS: dict[str, list[Group]] = {
    "idle-gpu-fleet": [
        Group("gpu-dev", 4, GPU_DEV, idle(0.038), instance_type="p3.2xlarge", resource="gpu"),
        Group("gpu-prod", 2, GPU_PROD, idle(0.038), instance_type="p3.2xlarge", resource="gpu"),
        Group("web", 74, WEB, busy(), instance_type="m5.large"),
    ],
    "overprovisioned-deployment": [
        Group(
            "catalog",
            1,
            {"env": "production", "owner": "shop-team"},
            idle(0.1),
            memory_shape=idle(0.25),
        ),
        Group("web", 19, WEB, busy(), instance_type="m5.large"),
    ],
    "bursty-batch-job": [
        Group("nightly-etl", 1, {"env": "dev", "owner": "data-team"}, nightly(), cpu="8", memory="16Gi"),
        Group("web", 19, WEB, busy(), instance_type="m5.large"),
    ],
    "untagged-resources": [
        Group("mystery", 3, {"env": "dev"}, idle(), instance_type="g4dn.xlarge", resource="gpu"),
        Group("scratch", 2, {"env": "dev", "owner": "ml-research"}, idle(), instance_type="t3.medium"),
        Group("web", 15, WEB, busy(), instance_type="m5.large"),
    ],
    "young-workload": [
        Group("fresh", 2, {"env": "dev", "owner": "ml-research"}, idle(), instance_type="g5.xlarge", days=12),
        Group("web", 38, WEB, busy(), instance_type="m5.large"),
    ],
    "shadow-watch": [
        Group(
            "watched",
            2,
            {"env": "dev", "owner": "data-eng", "watch": "shadow"},
            idle(),
            instance_type="t3.large",
        ),
        Group("web", 18, WEB, busy(), instance_type="m5.large"),
    ],
    "action-cap": [
        Group("sandbox-box", 40, {"env": "dev", "owner": "interns"}, idle(), instance_type="t3.medium"),
        Group("web", 60, WEB, busy(), instance_type="m5.large"),
    ],
}


@dataclass
class ResourceEstate:
    """What :func:`seed_resource_estate` created: per fleet, instance IDs and Deployments by group."""

    instances: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    deployments: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    series: list[Series] = field(default_factory=list)

    def namespace(self, fleet: str) -> str:
        return f"fleet-{fleet}"


def seed_resource_estate(aws: Any, kube_api: ApiClient | None) -> ResourceEstate:
    """Create every fleet's instances in moto and Deployments in the emulator; describe their history."""
    estate = ResourceEstate()
    ec2 = aws.client("ec2") if aws is not None else None
    apps = AppsV1Api(kube_api) if kube_api is not None else None
    for fleet, groups in FLEETS.items():
        for group in groups:
            tags = {**group.tags, "fleet": fleet}
            if group.instance_type:
                if ec2 is None:
                    continue
                ids = _run_instances(ec2, group, tags)
                estate.instances.setdefault(fleet, {})[group.prefix] = ids
                estate.series += [
                    Series("ec2-instance", ACCOUNT, instance, group.resource, group.shape, group.days)
                    for instance in ids
                ]
            elif apps is not None:
                names = _create_deployments(apps, estate.namespace(fleet), group, tags)
                estate.deployments.setdefault(fleet, {})[group.prefix] = names
                for name in names:
                    scope = estate.namespace(fleet)
                    estate.series.append(Series("deployment", scope, name, "cpu", group.shape, group.days))
                    if group.memory_shape is not None:
                        estate.series.append(
                            Series("deployment", scope, name, "memory", group.memory_shape, group.days)
                        )
    return estate


def history_writer(estate: ResourceEstate, scratch: Path, end: Callable[[], float]) -> Callable[[Path], None]:
    """The Monitoring hook that backfills the estate's history into Prometheus's TSDB folder."""

    def write(tsdb: Path) -> None:
        backfill(estate.series, tsdb, int(end()), scratch)

    return write


def _run_instances(ec2: Any, group: Group, tags: dict[str, str]) -> list[str]:
    ids = []
    for index in range(group.count):
        named = {**tags, "Name": f"{group.prefix}-{index}"}
        reservation = ec2.run_instances(
            ImageId=SANDBOX_AMI,
            InstanceType=group.instance_type,
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in named.items()]}
            ],
        )
        ids.append(reservation["Instances"][0]["InstanceId"])
    return ids


def _create_deployments(apps: AppsV1Api, namespace: str, group: Group, labels: dict[str, str]) -> list[str]:
    names = []
    for index in range(group.count):
        name = group.prefix if group.count == 1 else f"{group.prefix}-{index}"
        selector = {"app": name}
        body = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": {**labels, **selector}},
            "spec": {
                "replicas": group.replicas,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": selector},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": f"registry.example/{name}:1.0",
                                "resources": {"requests": {"cpu": group.cpu, "memory": group.memory}},
                            }
                        ]
                    },
                },
            },
        }
        apps.create_namespaced_deployment(namespace, body, _preload_content=False)  # type: ignore[arg-type]
        names.append(name)
    return names
