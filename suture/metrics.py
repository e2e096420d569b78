"""What a Prometheus user sees of suture's runs: counters, histograms and gauges.

The facts come from the audit activities, which see every step a run writes and
how it closed. They are counted there, and only when the store took the write as
new, so a retried activity never counts twice; workflow code never touches these
metrics, because a replayed workflow would count its past again. What lives in
the audit store (the chain head, the kill switches) is read at scrape time, so
it is right even for a worker that just started.

Everything is on :data:`REGISTRY`, which the worker's metrics endpoint serves
(:mod:`workers.metrics`); the ingress keeps its own registry.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from suture.audit_chain import CHAIN_HEAD_GAUGE, CHAIN_HEAD_HELP
from suture.models import AuditEntry, Loop, LoopResult, Outcome, Step

if TYPE_CHECKING:
    from suture.store import AuditStore

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
"""The registry of run metrics, served by the worker's ``/metrics``."""

# Runs take seconds in a drill and up to hours when they wait for a person.
DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, float("inf"))

RUNS_STARTED = Counter(
    "suture_runs_started", "Runs that wrote their first audit entry.", ["loop"], registry=REGISTRY
)
RUNS_CLOSED = Counter(
    "suture_runs_closed", "Runs that closed, by how they ended.", ["loop", "outcome"], registry=REGISTRY
)
ACTIONS = Counter(
    "suture_actions",
    "Actions taken by closed runs; result is applied (kept) or undone (compensated).",
    ["type", "result"],
    registry=REGISTRY,
)
UNDOS = Counter(
    "suture_undos", "Actions suture undid because verification did not pass.", ["loop"], registry=REGISTRY
)
MTTR = Histogram(
    "suture_mttr_seconds",
    "Detected to verified resolved, for runs that resolved (escalations are not folded in).",
    ["loop"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
TIME_TO_FIRST_ACTION = Histogram(
    "suture_time_to_first_action_seconds",
    "Detected to the first action started, for runs that acted.",
    ["loop"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
AWAITING_APPROVAL = Gauge(
    "suture_runs_awaiting_approval",
    "Runs this worker saw start waiting for a person's approval and not yet move on.",
    registry=REGISTRY,
)

# Entries a run writes while it still waits: they do not end the wait.
_STILL_WAITING = {"approval_ignored", "signal_ignored"}
_waiting: set[str] = set()
# The store replaces a closed run's row without saying whether it existed, so a
# retried close is recognised here; a retry that lands on another worker is rare.
_closed: OrderedDict[str, None] = OrderedDict()
_CLOSED_REMEMBERED = 10_000


def observe_entry(entry: AuditEntry) -> None:
    """Count what a newly recorded audit entry says about its run."""
    if entry.seq == 1:
        RUNS_STARTED.labels(loop=str(entry.loop)).inc()
    if entry.step == Step.AWAITING_APPROVAL:
        _waiting.add(entry.workflow_id)
    elif entry.step not in _STILL_WAITING:
        _waiting.discard(entry.workflow_id)
    AWAITING_APPROVAL.set(len(_waiting))


def observe_close(result: LoopResult) -> None:
    """Count a closed run, its actions and its durations, once per run."""
    _waiting.discard(result.workflow_id)
    AWAITING_APPROVAL.set(len(_waiting))
    if result.workflow_id in _closed:
        return
    _closed[result.workflow_id] = None
    if len(_closed) > _CLOSED_REMEMBERED:
        _closed.popitem(last=False)
    loop = str(result.loop)
    RUNS_CLOSED.labels(loop=loop, outcome=str(result.outcome)).inc()
    for action in result.actions:
        ACTIONS.labels(type=action.type, result="undone" if action.compensated else "applied").inc()
        if action.compensated:
            UNDOS.labels(loop=loop).inc()
    detected = result.timeline.detected
    resolved_at = result.timeline.verified
    if result.outcome == Outcome.RESOLVED and detected and resolved_at:
        MTTR.labels(loop=loop).observe(_seconds(detected, resolved_at))
    first_action = min((a.started_at for a in result.actions if a.started_at), default=None)
    first_action = first_action or result.timeline.acted
    if detected and first_action:
        TIME_TO_FIRST_ACTION.labels(loop=loop).observe(_seconds(detected, first_action))


def _seconds(start: datetime, end: datetime | None) -> float:
    return max((end - start).total_seconds(), 0.0) if end else 0.0


class StoreGauges(Collector):
    """The audit chain head and the kill switches, read from the store at scrape time.

    A scrape that cannot read the store leaves these series out rather than
    failing the whole endpoint: the worker-down and chain alerts notice a gap.
    """

    def __init__(self) -> None:
        self.store: AuditStore | None = None

    def watch(self, store: AuditStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        store = self.store
        if store is None:
            return
        with contextlib.suppress(Exception):
            yield GaugeMetricFamily(CHAIN_HEAD_GAUGE, CHAIN_HEAD_HELP, value=store.chain_head_seq())
        try:
            paused = {switch.scope: switch.paused for switch in store.switches()}
        except Exception as error:
            log.debug("kill switches unreadable at scrape time: %s", error)
            return
        family = GaugeMetricFamily(
            "suture_kill_switch_paused",
            "1 while the kill switch of the scope (all, or a loop) is pulled.",
            labels=["scope"],
        )
        for scope in ("all", *(str(loop) for loop in Loop)):
            family.add_metric([scope], 1.0 if paused.get(scope) else 0.0)
        yield family


STORE_GAUGES = StoreGauges()
REGISTRY.register(STORE_GAUGES)
