"""How the simulated services behave, and what their exporters report."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Behaviour:
    """How one version (image) of a service behaves."""

    latency_p99_s: float
    error_ratio: float = 0.0
    memory_growth_bytes_per_s: float = 0.0
    base_memory_bytes: float = 200e6


@dataclass
class ServiceSpec:
    """A Deployment of the estate, with its rollout history.

    ``history`` lists the images rolled out, oldest first; the last one is current.
    A failing dependency makes every version slow and erroring, so rolling back
    does not help.
    """

    namespace: str
    name: str
    versions: dict[str, Behaviour]
    history: list[str]
    replicas: int = 2
    load_rps: float = 50.0
    capacity_rps_per_replica: float = 40.0
    dependency_healthy: bool = True
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Observation:
    """What a service's exporter reports at one instant."""

    image: str
    replicas: int
    latency_p99_s: float
    error_ratio: float
    memory_bytes: float
    saturation_ratio: float
