"""The alert intake: how a storm's payload is cut into durable pieces and delivered from inside Temporal.

An Alertmanager payload of thousands of alerts cannot be made durable one
signal-with-start at a time within Alertmanager's patience: each is a call to
Temporal, and a 2-core dev server takes a few hundred a second. Instead the
ingress starts one ``AlertIntake`` workflow per chunk of the payload (at most
:data:`CHUNK_ALERTS` alerts and :data:`CHUNK_BYTES` serialized, well inside
Temporal's 2 MiB payload limit), answers 2xx once every chunk's start is
durable, and the intake runs deliver the alerts to their reliability runs from
the worker, with the very signal-with-start the ingress would have made.

Every alert of one run stays in one chunk and one batch, in payload order, so
its run sees its signals in the order Alertmanager sent them. Everything here is
pure: the ingress, the workflow and the worker's activity share it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import Field

from suture.identity import reliability_workflow_id
from suture.models import AlertNotice, Contract

DIRECT_ALERTS = 100
"""Payloads up to this many alerts are delivered alert by alert before the answer, as always."""
CHUNK_ALERTS = 500
"""Alerts per intake run."""
CHUNK_BYTES = 1024 * 1024
"""Serialized alerts per intake run: half of Temporal's default payload limit."""
BATCH_ALERTS = 100
"""Alerts per delivery activity of an intake run."""


class IntakeInput(Contract):
    """One chunk of a payload: the alerts an ``AlertIntake`` run delivers, and where their runs go."""

    alerts: list[AlertNotice] = Field(min_length=1)
    task_queue: str
    group_key: str = ""


class IntakeReport(Contract):
    """What an intake run (or one of its batches) did, by delivery kind (``started``, ``joined``, ...)."""

    kinds: dict[str, int] = Field(default_factory=dict)
    failures: list[str] = Field(default_factory=list)

    @classmethod
    def merged(cls, reports: Iterable[IntakeReport]) -> IntakeReport:
        kinds: dict[str, int] = {}
        failures: list[str] = []
        for report in reports:
            for kind, count in report.kinds.items():
                kinds[kind] = kinds.get(kind, 0) + count
            failures += report.failures
        return cls(kinds=kinds, failures=failures[:20])


def by_run(alerts: Sequence[AlertNotice]) -> list[list[AlertNotice]]:
    """The alerts grouped by their run: runs in order of first appearance, alerts in payload order."""
    groups: dict[str, list[AlertNotice]] = {}
    for alert in alerts:
        groups.setdefault(reliability_workflow_id(alert), []).append(alert)
    return list(groups.values())


def pack(
    alerts: Sequence[AlertNotice], max_alerts: int, max_bytes: int | None = None
) -> list[list[AlertNotice]]:
    """The alerts cut into pieces of at most ``max_alerts`` (and ``max_bytes`` serialized), runs kept whole.

    A run with more alerts than a piece holds gets a piece of its own.
    """
    pieces: list[list[AlertNotice]] = []
    current: list[AlertNotice] = []
    size = 0
    for group in by_run(alerts):
        group_size = sum(len(alert.model_dump_json()) for alert in group) if max_bytes else 0
        too_many = len(current) + len(group) > max_alerts
        too_big = max_bytes is not None and size + group_size > max_bytes
        if current and (too_many or too_big):
            pieces.append(current)
            current, size = [], 0
        current += group
        size += group_size
    if current:
        pieces.append(current)
    return pieces
