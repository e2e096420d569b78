"""``kafka.quarantine`` through the Kafka protocol (confluent-kafka), unchanged against any broker.

The poison batch is found by looking, not guessed: from the group's committed
offset, the leading messages that do not decode in the consumer's format are the
batch (at most ``max_messages``); the first one that decodes ends it. Their
offsets are the undo state and the evidence.

Reads use ``assign()`` with explicit offsets and commits name their offsets, never
``subscribe()``: joining the group would make suture a member that steals
partitions from the real consumers, and a rebalance takes seconds. Positions are
read from what the fetch returns rather than from the high watermark, which some
Kafka-protocol brokers report late.

Idempotency: every dead-letter copy carries ``suture-idempotency-key``; a retry
finds the copies already written and does not write them twice. The offset is
moved only from where suture found it; an undo refuses to move it back when the
group has moved on since (someone or something else acted).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from temporalio.exceptions import ApplicationError

from policies.actions import kafka as declared
from policies.actions.declaration import implements
from policies.actions.kafka import QuarantineParams, QuarantineState
from suture.models import ActionOutcome, Evidence, PlannedAction, Snapshot

IDEMPOTENCY_HEADER = "suture-idempotency-key"
POLL_S = 1.0
"""How long one fetch waits for the next message before the end of the log is assumed."""


class KafkaActions:
    """The ``kafka.*`` activities against one cluster (``bootstrap.servers``)."""

    def __init__(self, bootstrap_servers: str, extra_config: dict[str, Any] | None = None) -> None:
        self._config = {"bootstrap.servers": bootstrap_servers, **(extra_config or {})}

    @implements(declared.find_poison_batch)
    def find_poison_batch(self, action: PlannedAction) -> Snapshot:
        params = QuarantineParams.model_validate(action.params)
        committed = self._committed(params.group, params.topic, params.partition)
        poison = []
        for message in self._read(params.topic, params.partition, committed, params.max_messages + 1):
            if _decodes(message.value(), params.format):
                break
            poison.append(int(message.offset() or 0))
        state = QuarantineState(
            topic=params.topic,
            partition=params.partition,
            group=params.group,
            dead_letter_topic=params.dead_letter(),
            committed_before=committed,
            poison_offsets=poison[: params.max_messages],
        )
        return state.snapshot(action)

    @implements(declared.quarantine_batch)
    def quarantine_batch(self, snapshot: Snapshot) -> ActionOutcome:
        state = QuarantineState.of(snapshot)
        key = snapshot.action.idempotency_key
        if not state.poison_offsets:
            return _outcome(snapshot, False, f"no undecodable message at offset {state.committed_before}")
        copied = self._copy_to_dead_letter(state, key)
        current = self._committed(state.group, state.topic, state.partition)
        if current == state.committed_before:
            self._commit(state.group, state.topic, state.partition, state.committed_after)
        elif current != state.committed_after:
            raise ApplicationError(
                f"group {state.group} moved from offset {state.committed_before} to {current} since suture "
                "looked; the batch was copied to the dead-letter topic but the offset is left alone",
                non_retryable=True,
                type="TargetChanged",
            )
        first, last = state.poison_offsets[0], state.poison_offsets[-1]
        return _outcome(
            snapshot,
            True,
            f"{len(state.poison_offsets)} messages (offsets {first}-{last}) of "
            f"{state.topic}/{state.partition} in {state.dead_letter_topic} ({copied} copied now); "
            f"group {state.group} committed at {state.committed_after}",
        )

    @implements(declared.restore_offset)
    def restore_offset(self, snapshot: Snapshot) -> ActionOutcome:
        state = QuarantineState.of(snapshot)
        current = self._committed(state.group, state.topic, state.partition)
        if current == state.committed_before:
            return _outcome(snapshot, False, f"group {state.group} is at {current} already")
        if current != state.committed_after:
            raise ApplicationError(
                f"group {state.group} is at offset {current}, not where suture left it "
                f"({state.committed_after}); not moving it back over someone else's progress",
                non_retryable=True,
                type="TargetChanged",
            )
        self._commit(state.group, state.topic, state.partition, state.committed_before)
        return _outcome(
            snapshot,
            True,
            f"group {state.group} back at offset {state.committed_before}; "
            f"the dead-letter copy in {state.dead_letter_topic} is kept",
        )

    # --- the protocol ------------------------------------------------------------------------

    def _copy_to_dead_letter(self, state: QuarantineState, key: str) -> int:
        done = {
            _header(message, "suture-original-offset")
            for message in self._read(state.dead_letter_topic, 0, 0, None)
            if _header(message, IDEMPOTENCY_HEADER) == key
        }
        wanted = set(state.poison_offsets)
        producer = Producer(self._config)
        copied = 0
        for message in self._read(state.topic, state.partition, state.poison_offsets[0], len(wanted)):
            offset = message.offset()
            if offset not in wanted or str(offset) in done:
                continue
            original = [(header[0], header[1]) for header in message.headers() or []]
            headers: list[tuple[str, str | bytes | None]] = [
                *original,
                ("suture-original-topic", state.topic.encode()),
                ("suture-original-partition", str(state.partition).encode()),
                ("suture-original-offset", str(offset).encode()),
                (IDEMPOTENCY_HEADER, key.encode()),
            ]
            value, message_key = message.value(), message.key()
            producer.produce(state.dead_letter_topic, value=value, key=message_key, headers=headers)
            copied += 1
        if producer.flush(30) != 0:
            raise ApplicationError(f"the dead-letter topic {state.dead_letter_topic} did not take the batch")
        return copied

    def _read(self, topic: str, partition: int, start: int, limit: int | None) -> Iterator[Message]:
        with self._consumer(None) as consumer:
            consumer.assign([TopicPartition(topic, partition, start)])
            count = 0
            while limit is None or count < limit:
                message = consumer.poll(POLL_S)
                if message is None:
                    return
                if message.error():
                    raise ApplicationError(f"reading {topic}/{partition}: {message.error()}")
                count += 1
                yield message

    def _committed(self, group: str, topic: str, partition: int) -> int:
        with self._consumer(group) as consumer:
            try:
                found = consumer.committed([TopicPartition(topic, partition)], timeout=10)
            except KafkaException as error:
                raise ApplicationError(f"reading the offset of group {group}: {error}") from error
        offset = found[0].offset
        if offset < 0:
            raise ApplicationError(
                f"group {group} has no committed offset on {topic}/{partition}; nothing to move past",
                non_retryable=True,
            )
        return int(offset)

    def _commit(self, group: str, topic: str, partition: int, offset: int) -> None:
        with self._consumer(group) as consumer:
            try:
                consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
            except KafkaException as error:
                raise ApplicationError(f"committing offset {offset} for group {group}: {error}") from error

    @contextmanager
    def _consumer(self, group: str | None) -> Iterator[Consumer]:
        config = {
            **self._config,
            "group.id": group or "suture-reader",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
        consumer = Consumer(config)
        try:
            yield consumer
        finally:
            consumer.close()


def _decodes(value: bytes | None, format: str) -> bool:
    if value is None:
        return False
    try:
        text = value.decode("utf-8")
        if format == "json":
            json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return False
    return True


def _header(message: Message, name: str) -> str | None:
    for header in message.headers() or []:
        key, value = header[0], header[1]
        if key == name and value is not None:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def _outcome(snapshot: Snapshot, changed: bool, detail: str) -> ActionOutcome:
    state = QuarantineState.of(snapshot)
    return ActionOutcome(
        action=snapshot.action,
        changed=changed,
        detail=detail,
        evidence=[
            Evidence(
                source="kafka",
                query=f"{state.topic}/{state.partition} group {state.group}",
                value=",".join(map(str, state.poison_offsets)),
                at=datetime.now(UTC),
                note=detail[:500],
            )
        ],
    )
