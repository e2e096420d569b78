"""The resource sweep's bookkeeping: its policies and what was acted on today, from suture's own store.

Both are short reads of local state, run as local activities. The daily cap is
counted from the runs the audit store closed since midnight UTC, so it holds
across sweeps, workers and restarts.
"""

from __future__ import annotations

from temporalio import activity

from activities.policy_store import PolicyStore
from policies.resource import ResourcePolicy
from suture.fleet import ActedToday, ActedTodayQuery, ResourcePolicySet
from suture.models import Loop, Mode
from suture.store import AuditStore


class ResourceBookkeeping:
    def __init__(self, store: AuditStore, policies: PolicyStore) -> None:
        self.store = store
        self.policies = policies

    @activity.defn(name="resource.acted_today")
    def acted_today(self, query: ActedTodayQuery) -> ActedToday:
        """Targets a resource run acted on (not merely dry-run) since ``query.since``."""
        targets = {
            action.target
            for run in self.store.runs(since=query.since, loop=Loop.RESOURCE)
            for action in run.actions
            if action.mode in (Mode.SUPERVISED, Mode.AUTONOMOUS)
        }
        return ActedToday(targets=sorted(targets))

    @activity.defn(name="policy.resource_set")
    def resource_set(self, _: ActedTodayQuery) -> ResourcePolicySet:
        """Every resource policy, in load order, pinned (with its version) for one sweep."""
        found = [policy for policy in self.policies.policies() if isinstance(policy, ResourcePolicy)]
        return ResourcePolicySet(policies=[policy.model_dump(mode="json") for policy in found])
