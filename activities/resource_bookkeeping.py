"""The resource sweep's bookkeeping: its policies and what was acted on today, from suture's own store.

Both are short reads of local state, run as local activities. The daily cap is
counted from the runs the audit store closed since midnight UTC, so it holds
across sweeps, workers and restarts.
"""

from __future__ import annotations

from temporalio import activity

from activities.policy_store import PolicyStore
from policies.resource import ResourcePolicy
from suture.fleet import (
    TAGS_REQUESTED,
    ActedToday,
    ActedTodayQuery,
    InHand,
    InHandQuery,
    ResourcePolicySet,
    TagRequestQuery,
    TagRequestSeen,
)
from suture.models import Loop, Mode
from suture.store import AuditStore


class ResourceBookkeeping:
    def __init__(self, store: AuditStore, policies: PolicyStore) -> None:
        self.store = store
        self.policies = policies

    @activity.defn(name="resource.acted_today")
    def acted_today(self, query: ActedTodayQuery) -> ActedToday:
        """Targets a resource run acted on (not merely dry-run) since ``query.since``.

        Runs still open count too, from their ``acted`` audit events: a run verifying
        for an hour must not leave room in the cap for the next hourly sweep.
        """
        closed = {
            action.target
            for run in self.store.runs(since=query.since, loop=Loop.RESOURCE)
            for action in run.actions
            if action.mode in (Mode.SUPERVISED, Mode.AUTONOMOUS)
        }
        # A resource run's subject is its one target.
        still_open = {entry.subject for entry in self.store.events_at("acted", query.since, Loop.RESOURCE)}
        return ActedToday(targets=sorted(closed | still_open))

    @activity.defn(name="resource.in_hand")
    def in_hand(self, query: InHandQuery) -> InHand:
        """Which of ``query.targets`` a run holds now: a second run on them would only be suppressed."""
        return InHand(holders=self.store.lock_holders(query.targets))

    @activity.defn(name="resource.tags_asked")
    def tags_asked(self, query: TagRequestQuery) -> TagRequestSeen:
        """When a sweep last asked for tags on the same untagged list, if it did since ``query.since``."""
        asked = [
            entry.at
            for entry in self.store.events_at(TAGS_REQUESTED, query.since, Loop.RESOURCE)
            if entry.detail.endswith(f"[{query.digest}]")
        ]
        return TagRequestSeen(asked_at=max(asked, default=None))

    @activity.defn(name="policy.resource_set")
    def resource_set(self, _: ActedTodayQuery) -> ResourcePolicySet:
        """Every resource policy, in load order, pinned (with its version) for one sweep."""
        found = [policy for policy in self.policies.policies() if isinstance(policy, ResourcePolicy)]
        return ResourcePolicySet(policies=[policy.model_dump(mode="json") for policy in found])
