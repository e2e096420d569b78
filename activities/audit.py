"""The audit store as activities: record steps, hold per-target locks, close runs.

The workflow owns the sequence numbers, so a retried ``audit.record`` writes the
same ``(workflow_id, seq)`` and the store turns it into a no-op. Claims and
releases are keyed by workflow id for the same reason: a retry of either finds
the state it already left and answers as before. The store is synchronous
SQLAlchemy, so these are sync activities and run on the worker's thread pool.

They are also where a run's metrics are counted and its events logged
(:mod:`suture.metrics`, :mod:`suture.logs`): only an entry the store took as new
counts, so neither a retry nor a replayed workflow counts or logs twice.
"""

from __future__ import annotations

from temporalio import activity

from suture import metrics, trust_store
from suture.logs import log_run_event
from suture.models import AuditEntry, ClaimResult, LoopResult, TargetClaim, TargetRelease
from suture.store import AuditStore


class AuditActivities:
    """Activities over one :class:`~suture.store.AuditStore`, shared by every run of the worker."""

    def __init__(self, store: AuditStore) -> None:
        self.store = store
        metrics.STORE_GAUGES.watch(store)

    @activity.defn(name="audit.record")
    def record(self, entry: AuditEntry) -> None:
        if not self.store.record(entry):
            activity.logger.debug("audit entry %s #%d was already recorded", entry.workflow_id, entry.seq)
            return
        metrics.observe_entry(entry)
        if entry.seq == 1:
            log_run_event("started", entry.workflow_id, entry.loop, entry.subject)
        log_run_event(entry.step, entry.workflow_id, entry.loop, entry.subject, detail=entry.detail)

    @activity.defn(name="audit.claim_target")
    def claim_target(self, claim: TargetClaim) -> ClaimResult:
        result = self.store.claim_target(claim)
        if not result.granted:
            activity.logger.info("claim of %s refused: %s", claim.target, result.reason)
        return result

    @activity.defn(name="audit.release_target")
    def release_target(self, release: TargetRelease) -> None:
        self.store.release_target(release)

    @activity.defn(name="audit.close_run")
    def close_run(self, result: LoopResult) -> None:
        self.store.close_run(result)
        demoted = trust_store.record_closed_run(self.store, result)
        if demoted:
            activity.logger.warning("%s demoted %s to supervised", result.workflow_id, ", ".join(demoted))
        metrics.observe_close(result)
        log_run_event(
            "closed", result.workflow_id, result.loop, result.subject, result.outcome, result.reason
        )
