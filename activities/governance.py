"""Governance as activities: the kill switch a loop reads before each action, and its stage.

People pull and release switches with ``suture pause`` / ``suture resume``, which
write the audit store directly; the workflow only reads them, through this
activity, right before every action so that a switch pulled while a run waited
for approval or between two actions stops the next one. The store is synchronous
SQLAlchemy, so this is a sync activity on the worker's thread pool.

The activation stage (:mod:`suture.stages`) is read the same way, once a run has
decided what it would do: ``suture stage advance`` writes it, runs only read it.
A loop nobody has staged is at the process's default stage.
"""

from __future__ import annotations

from temporalio import activity

from suture.models import KillSwitchQuery, KillSwitchState
from suture.stages import Stage, StageQuery, StageState
from suture.store import AuditStore


class Governance:
    """Kill switch and stage reads over one :class:`~suture.store.AuditStore`."""

    def __init__(self, store: AuditStore, default_stage: Stage = Stage.READ_ONLY) -> None:
        self.store = store
        self.default_stage = default_stage

    @activity.defn(name="governance.kill_switch")
    def kill_switch(self, query: KillSwitchQuery) -> KillSwitchState:
        state = self.store.switch_state(query.loop)
        return KillSwitchState(paused=state.paused, scope=state.scope, by=state.by, reason=state.reason)

    @activity.defn(name="governance.stage")
    def stage(self, query: StageQuery) -> StageState:
        return self.store.stage(query.loop, self.default_stage)
