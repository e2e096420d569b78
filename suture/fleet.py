"""The contracts of the resource loop: the fleet, its utilisation, the sweep and its candidates.

A sweep evaluates every workload of a fleet but carries only *candidates* through
Temporal: the fleet itself (thousands of workloads) is read, summarised and
classified inside one activity, so a workflow history never holds a row per
workload. Nothing here performs I/O: workflow code imports this module.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from suture.models import Contract, Mode, PlannedAction, Target

OWNER_TAG = "owner"
ENV_TAG = "env"


class WorkloadKind(StrEnum):
    EC2_INSTANCE = "ec2-instance"
    DEPLOYMENT = "deployment"


class ContainerRequests(Contract):
    """What one container of a Deployment's pod template requests, per replica."""

    name: str
    cpu_cores: float = 0.0
    memory_gib: float = 0.0


class Workload(Contract):
    """One thing that costs money: an EC2 instance or a Kubernetes Deployment.

    ``scope`` is the account for an instance and the namespace for a Deployment,
    as in :class:`~suture.models.Target`, so the resource loop and the security
    loop claim the same lock for the same resource.
    """

    kind: WorkloadKind
    scope: str
    name: str
    labels: dict[str, str] = {}
    """Tags of an instance, labels of a Deployment."""
    region: str = ""
    instance_type: str = ""
    state: str = ""
    """An instance's state (``running``, ``stopped``...); empty for a Deployment."""
    replicas: int = 0
    containers: list[ContainerRequests] = []
    created_at: datetime | None = None

    @property
    def target(self) -> Target:
        return Target(kind=str(self.kind), scope=self.scope, name=self.name)

    @property
    def key(self) -> str:
        return f"{self.scope}/{self.name}"

    @property
    def cpu_request_cores(self) -> float:
        return sum(container.cpu_cores for container in self.containers)

    @property
    def memory_request_gib(self) -> float:
        return sum(container.memory_gib for container in self.containers)

    @property
    def tagged(self) -> bool:
        """Whether it can be routed to an owner and told apart by environment."""
        return bool(self.labels.get(OWNER_TAG)) and bool(self.labels.get(ENV_TAG))


class UtilisationSummary(Contract):
    """30 days of one workload's utilisation, reduced to what the decision reads.

    Utilisation is a ratio of what the workload holds: GPU or CPU of an instance,
    CPU or memory requests of a Deployment.
    """

    key: str
    resource: str
    p95: float
    max: float
    history_days: float
    burst_days: float = 0.0
    """Share of the days in the window whose maximum crossed the burst bar: periodicity."""


class WasteClass(StrEnum):
    """What the sweep concluded about one workload."""

    IDLE = "idle"
    OVERPROVISIONED = "overprovisioned"
    IN_USE = "in_use"
    BURSTY_PROTECTED = "bursty_protected"
    TOO_YOUNG = "too_young"
    UNTAGGED = "untagged"
    PRODUCTION_PROTECTED = "production_protected"
    NO_DATA = "no_data"
    STOPPED = "stopped"
    """An instance that is not running: nothing to reclaim, but still part of the fleet."""


class Finding(Contract):
    """One workload the sweep would act on, with the money at stake."""

    workload: Workload
    waste: WasteClass
    policy: str
    policy_version: str = ""
    mode: Mode
    action: PlannedAction
    burn_usd_hour: float
    savings_usd_month: float
    reason: str
    p95: float
    max: float
    history_days: float
    resource: str = "cpu"
    """The utilisation series the judgement read (``gpu``, ``cpu``, ``memory``)."""


class FleetQuery(Contract):
    """Which part of the estate a sweep evaluates: workloads whose tags/labels equal ``scope``."""

    scope: dict[str, str] = {}
    policies: list[dict[str, Any]] = []
    """The resource policies pinned by the sweep, as plain data (the activity re-validates them)."""
    sweep_id: str = ""
    acted_today: list[str] = []
    """Targets the resource loop acted on today: the fleet's share of them counts against the cap."""


class FleetAnalysis(Contract):
    """What one batched analysis of the fleet found."""

    fleet_size: int
    tagged: int
    counts: dict[str, int] = {}
    """Workloads per :class:`WasteClass`."""
    untagged: list[str] = []
    """Keys of untagged workloads (the first hundred)."""
    findings: list[Finding] = []
    acted_today: int = 0
    queries: list[str] = []
    evaluated_at: datetime
    price_table: str = ""


class SweepInput(Contract):
    scope: dict[str, str] = {}
    """Evaluate only workloads whose tags/labels equal these; empty for the whole estate."""


class ActedTodayQuery(Contract):
    since: datetime


class ActedToday(Contract):
    targets: list[str] = []


class UtilisationQuery(Contract):
    """A workload's utilisation since ``since``: did it get busy by itself?"""

    key: str
    """``scope/name``, as the utilisation series labels it."""
    resource: str
    since: datetime


class UtilisationSeen(Contract):
    p95: float | None = None
    """The 95th percentile since then; None without a sample."""
    query: str = ""


class InHandQuery(Contract):
    targets: list[str] = []


class InHand(Contract):
    holders: dict[str, str] = {}
    """Target → the run holding its lock (waiting for approval, acting or verifying)."""


TAGS_REQUESTED = "tags_requested"
"""The audit step of a sweep's request for tags; its detail ends with ``[digest]`` of the list."""


class TagRequestQuery(Contract):
    """Was this very list of untagged resources asked about since ``since``?"""

    since: datetime
    digest: str


class TagRequestSeen(Contract):
    asked_at: datetime | None = None
    """When the same list was last asked about; None when it was not."""


class ResourceLoopInput(Contract):
    finding: Finding
    sweep_id: str
    policy: dict[str, Any]
    """The resource policy the sweep pinned, as plain data."""
    mode: Mode
    """The mode the gates left: the policy's, or dry-run over the daily cap or tag coverage."""
    reason_for_mode: str = ""
    """Why the sweep lowered the mode (daily cap, tag coverage), if it did."""


class CandidateRun(Contract):
    target: str
    workflow_id: str
    mode: Mode
    savings_usd_month: float
    started: bool = True
    note: str = ""


class SweepResult(Contract):
    workflow_id: str
    fleet_size: int
    tag_coverage: float
    acted_today: int
    daily_cap: int
    counts: dict[str, int] = {}
    candidates: list[CandidateRun] = []
    escalated: bool = False
    reason: str = ""


class ResourceCheck(Contract):
    """Re-read the resource an action changed: does it still hold the state suture left?"""

    action: PlannedAction
    expected: dict[str, object] = {}


class ResourcePolicySet(Contract):
    """The resource policies pinned for one sweep, as plain data, in load order."""

    policies: list[dict[str, Any]] = []
