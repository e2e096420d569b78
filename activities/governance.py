"""Governance as an activity: the kill switch a loop reads before each action.

People pull and release switches with ``suture pause`` / ``suture resume``, which
write the audit store directly; the workflow only reads them, through this
activity, right before every action so that a switch pulled while a run waited
for approval or between two actions stops the next one. The store is synchronous
SQLAlchemy, so this is a sync activity on the worker's thread pool.
"""

from __future__ import annotations

from temporalio import activity

from suture.models import KillSwitchQuery, KillSwitchState
from suture.store import AuditStore


class Governance:
    """Kill switch reads over one :class:`~suture.store.AuditStore`."""

    def __init__(self, store: AuditStore) -> None:
        self.store = store

    @activity.defn(name="governance.kill_switch")
    def kill_switch(self, query: KillSwitchQuery) -> KillSwitchState:
        state = self.store.switch_state(query.loop)
        return KillSwitchState(paused=state.paused, scope=state.scope, by=state.by, reason=state.reason)
