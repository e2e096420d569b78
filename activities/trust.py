"""Earned trust as activities: what the store knows about an incident, read at decision time.

``trust.assess`` answers, for one incident, the overrides of the plan's action
classes (promotions and demotions), an exception covering its target, the track
record of its signature and the nearest past incidents. It only reads suture's own
store, so it runs as a local activity; the workflow's gate
(:func:`policies.trust.gate`) is pure and applies the answer. Counting closed runs
into the track record happens beside ``audit.close_run`` (:mod:`activities.audit`).
"""

from __future__ import annotations

from temporalio import activity

from policies.trust import TrustAssessment, TrustQuery
from suture import trust_store
from suture.store import AuditStore


class TrustActivities:
    """Trust reads over one :class:`~suture.store.AuditStore`."""

    def __init__(self, store: AuditStore) -> None:
        self.store = store

    @activity.defn(name="trust.assess")
    def assess(self, query: TrustQuery) -> TrustAssessment:
        return trust_store.assess(self.store, query)
