"""Storms: many alerts, one cause, one run.

When a reliability run finds its alert is one of a storm (see
:mod:`activities.graph`), it starts the storm's run, or joins it when another
alert of the storm started it first, and ends ``suppressed`` saying which storm
it joined. The storm's workflow ID is derived from the namespace, the alert
name, the root and the time bucket of the first alert, so every alert of the
storm reaches the same run however they race, and a re-delivered alert joins
again instead of starting a second storm.

The storm run waits ``gather`` seconds for the rest of the storm to join, then:
with a root (an upstream all of them call that rolled out recently) it runs one
:class:`~workflows.reliability.ReliabilityLoop` on the root, as a child, with
the synthetic alert ``DependencyStorm`` and every joined alert as evidence; the
policy that matches ``DependencyStorm`` decides, acts and verifies as for any
alert. Without a root it escalates once, one briefing for the whole storm.

:class:`GraphRefresher` is the scheduled refresh of the dependency graph.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from workflows.loop import RemediationLoop

with workflow.unsafe.imports_passed_through():
    from policies.graph import GraphRefresh, GraphRefreshed, StormInput, refresh_graph
    from suture import search_attributes as sa
    from suture.models import (
        AlertNotice,
        Briefing,
        Evidence,
        Loop,
        LoopResult,
        Outcome,
        ReliabilityLoopInput,
    )

STORM_ALERT = "DependencyStorm"
"""The alertname of the synthetic alert a storm's root is remediated under."""
JOIN_SIGNAL = "join"
MAX_MEMBERS = 500


@workflow.defn(name="StormLoop")
class StormLoop(RemediationLoop):
    loop = Loop.RELIABILITY

    @workflow.init
    def __init__(self, request: StormInput) -> None:
        super().__init__()
        self.joined: dict[str, AlertNotice] = {request.first.fingerprint: request.first}

    @workflow.signal(name=JOIN_SIGNAL)
    def join(self, *payload: Any) -> None:
        """Another alert of the storm; a repeat of one already joined changes nothing."""
        notice = self.decode_signal(JOIN_SIGNAL, AlertNotice, payload)
        if notice is not None and len(self.joined) < MAX_MEMBERS:
            self.joined.setdefault(notice.fingerprint, notice)

    @workflow.query
    def members(self) -> list[str]:
        return sorted({_service(notice.labels) for notice in self.joined.values()})

    @workflow.run
    async def run(self, request: StormInput) -> LoopResult:
        first = request.first
        self.subject = (
            request.upstream or f"{first.labels.get('namespace', '-')} ({len(request.members)} services)"
        )
        self.timeline.detected = first.received_at
        await self.audit("detected", f"storm {request.storm_id}: {', '.join(request.members)}")
        await workflow.sleep(timedelta(seconds=request.gather_s))
        for notice in self.joined.values():
            self.add_evidence(_joined(notice))
        joined = ", ".join(self.members())
        await self.audit("storm_gathered", f"{len(self.joined)} alerts joined: {joined}", self.evidence[-20:])
        if request.upstream is None:
            return await self._one_briefing(request)
        return await self._remediate_root(request)

    async def _remediate_root(self, request: StormInput) -> LoopResult:
        upstream = request.upstream
        assert upstream is not None
        namespace, _, name = upstream.partition("/")
        first = request.first
        alert = AlertNotice(
            fingerprint=hashlib.sha256(request.storm_id.encode()).hexdigest()[:32],
            status="firing",
            labels={
                "alertname": STORM_ALERT,
                "namespace": namespace,
                "service": name,
                "deployment": name,
                "severity": first.labels.get("severity", ""),
                "storm_alert": first.labels.get("alertname", ""),
            },
            annotations={
                "summary": f"{len(self.joined)} services alerting behind {upstream}, which "
                f"{request.upstream_change}",
            },
            starts_at=first.starts_at,
            received_at=workflow.now(),
        )
        await self.audit("storm_root", f"acting once on {upstream}: it {request.upstream_change}")
        result: LoopResult = await workflow.execute_child_workflow(
            "ReliabilityLoop",
            ReliabilityLoopInput(alert=alert, joined=list(self.joined.values())),
            id=f"{request.storm_id}-root",
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=indexed_like_this_run(upstream),
            result_type=LoopResult,
        )
        await self.audit("storm_closed", f"the run on {upstream} ended {result.outcome}: {result.reason}")
        return result

    async def _one_briefing(self, request: StormInput) -> LoopResult:
        first = request.first
        reason = (
            f"{len(self.joined)} {first.labels.get('alertname', 'alert')} alerts fire together "
            "and no upstream they share changed recently: the root is unclear, so nothing was done"
        )
        briefing = Briefing(
            workflow_id=workflow.info().workflow_id,
            loop=self.loop,
            title=f"storm of {len(self.joined)} alerts in {first.labels.get('namespace', '-')}: root unclear",
            subject=self.subject,
            impact=f"{len(self.joined)} services alerting: {', '.join(self.members())}",
            scope=", ".join(self.members()),
            reason=reason,
            evidence=self.evidence[-20:],
            severity=first.labels.get("severity", ""),
            labels={
                key: value for key, value in first.labels.items() if key in ("namespace", "team", "owner")
            },
        )
        await self.escalate(briefing)
        return await self.finish(Outcome.ESCALATED, reason, briefing=briefing)


@workflow.defn(name="GraphRefresher")
class GraphRefresher:
    """Refresh the stored dependency graph once (started by its Temporal Schedule)."""

    @workflow.run
    async def run(self, request: GraphRefresh) -> GraphRefreshed:
        return await workflow.execute_activity(
            refresh_graph,
            request,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )


def indexed_like_this_run(service: str) -> TypedSearchAttributes | None:
    """suture's search attributes for a child run, when this run carries them; else none.

    A run started without them (a namespace where they are not registered) must
    not name them for its children: a server refuses, or never starts, a child
    with search attributes it does not know.
    """
    if workflow.info().typed_search_attributes.get(sa.SUTURE_LOOP) is None:
        return None
    return TypedSearchAttributes(
        [
            SearchAttributePair(sa.SUTURE_LOOP, Loop.RELIABILITY.value),
            SearchAttributePair(sa.SUTURE_SERVICE, service),
        ]
    )


def _service(labels: dict[str, str]) -> str:
    return f"{labels.get('namespace', '-')}/{labels.get('service', labels.get('deployment', '-'))}"


def _joined(notice: AlertNotice) -> Evidence:
    return Evidence(
        source="alertmanager",
        query=notice.labels.get("alertname", ""),
        value=_service(notice.labels),
        at=notice.received_at,
        note="joined the storm",
    )
