"""The reliability loop's Kafka actions, declared; ``activities/kafka.py`` implements them.

``kafka.quarantine`` takes a poison batch out of a consumer group's way: the
messages at the group's committed offset that the consumer cannot decode are
copied to a dead-letter topic (with their original topic, partition, offset and
headers), then the group's committed offset is moved past them. Its undo moves
the offset back and leaves the dead-letter copy, so nothing is ever lost. The
consumer Deployment is scaled with ``k8s.scale``; both are verified by the
policy's lag query.
"""

# mypy: disable-error-code="empty-body"
# The activity signatures below are declarations; their bodies never run.

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field

from policies.actions.declaration import ActionParams, ActionSpec, Permissions, UndoState, declare, register
from policies.actions.prometheus import check_health
from suture.models import ActionOutcome, Loop, PlannedAction, Snapshot


class QuarantineParams(ActionParams):
    topic: str = Field(pattern=r"^[A-Za-z0-9._-]{1,249}$", description="the topic the group consumes")
    group: str = Field(min_length=1, max_length=255, description="the consumer group that is stuck")
    partition: int = Field(default=0, ge=0)
    dead_letter_topic: str | None = Field(default=None, description="default: <topic>.dlq")
    format: Literal["json", "utf-8"] = Field(default="json", description="what the consumer decodes")
    max_messages: int = Field(default=100, ge=1, le=10_000, description="the largest batch quarantined")

    def dead_letter(self) -> str:
        return self.dead_letter_topic or f"{self.topic}.dlq"


class QuarantineState(UndoState):
    """Where the group stood, and which offsets are the poison batch (the evidence)."""

    topic: str
    partition: int
    group: str
    dead_letter_topic: str
    committed_before: int
    poison_offsets: list[int]

    @property
    def committed_after(self) -> int:
        return max(self.poison_offsets, default=self.committed_before - 1) + 1


@declare("kafka.find_poison_batch", timeout=timedelta(seconds=30))
def find_poison_batch(action: PlannedAction) -> Snapshot: ...


@declare("kafka.quarantine_batch", timeout=timedelta(seconds=60))
def quarantine_batch(snapshot: Snapshot) -> ActionOutcome: ...


@declare("kafka.restore_offset", timeout=timedelta(seconds=30))
def restore_offset(snapshot: Snapshot) -> ActionOutcome: ...


QUARANTINE = register(
    ActionSpec(
        name="kafka.quarantine",
        loop=Loop.RELIABILITY,
        summary="copy the undecodable batch to a dead-letter topic and move the group's offset past it",
        params=QuarantineParams,
        state=QuarantineState,
        prepare=find_poison_batch,
        do=quarantine_batch,
        undo=restore_offset,
        verify=check_health,
        permissions=Permissions(kafka=("Read:Topic", "Describe:Topic", "Read:Group", "Write:Topic (DLQ)")),
        max_targets=1,
        blast_radius="one consumer group on one partition; at most max_messages skipped, kept in the DLQ",
        example=(
            "actions:\n  - type: kafka.quarantine\n"
            "    params: {topic: orders, group: order-consumer, max_messages: 50}\n"
        ),
    )
)
