"""The price table: what an instance or a Kubernetes request costs per hour, at list price.

Shipped as ``policies/prices.yaml`` (region and date of the figures inside it) and
replaceable by a file of the same shape. Pure: reading the file is the caller's
business, so the sweep's arithmetic can be tested and replayed without I/O.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from suture.fleet import Workload, WorkloadKind


class KubernetesRates(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vcpu_hour: float = Field(gt=0)
    gib_hour: float = Field(gt=0)


class PriceTable(BaseModel):
    """On-demand $/hour per instance type and per requested vCPU and GiB."""

    model_config = ConfigDict(extra="forbid")

    region: str
    as_of: str
    source: str = ""
    hours_per_month: float = 730.0
    instances: dict[str, float]
    kubernetes: KubernetesRates

    @property
    def label(self) -> str:
        return f"{self.region} on-demand, {self.as_of}"

    def instance_hour(self, instance_type: str) -> float | None:
        """$/hour of ``instance_type``, or None when the table does not list it."""
        return self.instances.get(instance_type)

    def request_hour(self, cpu_cores: float, memory_gib: float) -> float:
        """$/hour that requests of ``cpu_cores`` and ``memory_gib`` reserve."""
        rates = self.kubernetes
        return cpu_cores * rates.vcpu_hour + memory_gib * rates.gib_hour

    def burn_hour(self, workload: Workload) -> float | None:
        """What ``workload`` costs per hour as it runs now; None when its price is unknown."""
        if workload.kind == WorkloadKind.EC2_INSTANCE:
            return self.instance_hour(workload.instance_type)
        per_replica = self.request_hour(workload.cpu_request_cores, workload.memory_request_gib)
        return workload.replicas * per_replica

    def per_month(self, per_hour: float) -> float:
        return round(per_hour * self.hours_per_month, 2)


def shipped_price_file() -> Path:
    return Path(str(resources.files("policies") / "prices.yaml"))


def load_price_table(path: Path | None = None) -> PriceTable:
    """Read a price table (the shipped one by default).

    Raises:
        pydantic.ValidationError: the file does not have the table's shape.
    """
    text = (path or shipped_price_file()).read_text(encoding="utf-8")
    return PriceTable.model_validate(yaml.safe_load(text))
