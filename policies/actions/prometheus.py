"""The reads of Prometheus, declared; ``activities/prometheus.py`` implements them.

``check_health`` is the verify step of every reliability action: the loop asks
the same signal that fired whether the action worked.
"""

# mypy: disable-error-code="empty-body"
# The activity signatures below are declarations; their bodies never run.

from __future__ import annotations

from datetime import timedelta

from policies.actions.declaration import declare
from suture.models import EvidenceReport, EvidenceRequest, HealthCheck, HealthReport, Loop


@declare("prometheus.collect_evidence", timeout=timedelta(seconds=60), loop=Loop.RELIABILITY)
def collect_evidence(request: EvidenceRequest) -> EvidenceReport: ...


@declare("prometheus.check_health", timeout=timedelta(seconds=20), loop=Loop.RELIABILITY)
def check_health(check: HealthCheck) -> HealthReport: ...
