"""The order stream of the poison-message drill: a producer and a consumer on a real broker.

Both are services of the estate (Deployments ``order-producer`` and
``order-consumer``); their work happens here, in two threads talking the Kafka
protocol to the sandbox's broker. The consumer reads the way a careful consumer
does: ``assign()`` at the group's committed offset, explicit commits of what it
processed. A message it cannot deserialise stops it: it retries the same offset
again and again, as consumers whose error handler retries forever do, and reads
the group's committed offset before each retry, so a batch an operator skipped
(by moving that offset) is honoured as it would be after a restart. Its
throughput is per replica: scaling its Deployment makes it catch up faster.

Lag is what was produced (the next offset, from the producer's delivery
reports) minus where the consumer stands. The broker's high watermark is never
read: the sandbox's broker reports it late (see :mod:`sandbox.kafka`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

TOPIC = "orders"
DEAD_LETTER = "orders.dlq"
GROUP = "order-consumer"
COMMIT_EVERY_S = 0.25


class OrderStream:
    """Orders produced at ``rate_per_s``; consumed at ``per_replica_per_s`` for each running replica.

    Args:
        bootstrap: the broker.
        replicas: how many replicas of the consumer run now (read from the estate).
    """

    def __init__(
        self,
        bootstrap: str,
        replicas: Callable[[], int | None],
        *,
        rate_per_s: float = 20.0,
        per_replica_per_s: float = 15.0,
    ) -> None:
        self.bootstrap = bootstrap
        self._replicas = replicas
        self.rate_per_s = rate_per_s
        self.per_replica_per_s = per_replica_per_s
        self.produced_end = 0
        """The next offset the topic will get: one past the last delivered message."""
        self.position = 0
        """The next offset the consumer will process."""
        self.failures = 0
        """Deserialisation failures so far (one per retry of a poison message)."""
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._producer: Any = None

    @property
    def lag(self) -> int:
        return max(self.produced_end - self.position, 0)

    def metrics(self) -> dict[str, float]:
        """The consumer's extra gauges for its exporter."""
        return {
            "sandbox_kafka_consumer_lag": float(self.lag),
            "sandbox_kafka_deserialise_failures": self.failures,
        }

    def start(self) -> OrderStream:
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.create_topics([NewTopic(name, 1, 1) for name in (TOPIC, DEAD_LETTER)]).values():
            future.result()
        self._producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        self._commit(self._new_consumer(), 0)
        for target in (self._produce_until_stopped, self._consume_until_stopped):
            thread = threading.Thread(target=target, name=f"order-stream-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()

    def inject_poison(self, count: int = 5) -> list[int]:
        """Produce ``count`` malformed messages in a row; their offsets."""
        offsets: list[int] = []
        with self._lock:
            for n in range(count):
                self._producer.produce(
                    TOPIC,
                    value=b"\x00\x17{order: " + str(n).encode() + b" truncated",
                    headers=[("producer", b"order-producer"), ("schema", b"orders-v2")],
                    on_delivery=lambda error, message: self._delivered(error, message, offsets),
                )
            self._producer.flush(10)
        return sorted(offsets)

    # --- the two services --------------------------------------------------------------

    def _produce_until_stopped(self) -> None:
        number = 0
        while not self._stopping.is_set():
            with self._lock:
                value = json.dumps({"order": number, "amount": 10 + number % 7}).encode()
                self._producer.produce(
                    TOPIC,
                    value=value,
                    headers=[("producer", b"order-producer")],
                    on_delivery=lambda error, message: self._delivered(error, message, None),
                )
                self._producer.poll(0)
            number += 1
            time.sleep(1 / self.rate_per_s)
        self._producer.flush(5)

    def _consume_until_stopped(self) -> None:
        from confluent_kafka import TopicPartition

        consumer = self._new_consumer()
        committed = self.position = self._committed(consumer)
        consumer.assign([TopicPartition(TOPIC, 0, self.position)])
        last_commit = time.monotonic()
        try:
            while not self._stopping.is_set():
                message = consumer.poll(0.2)
                if self.position > committed and time.monotonic() - last_commit > COMMIT_EVERY_S:
                    committed, last_commit = self._commit(consumer, self.position), time.monotonic()
                if message is None or message.error():
                    continue
                if _decodes(message.value()):
                    self.position = int(message.offset()) + 1
                    time.sleep(1 / (self.per_replica_per_s * max(self._replicas() or 0, 1)))
                    continue
                self.failures += 1
                if self.position > committed:
                    committed, last_commit = self._commit(consumer, self.position), time.monotonic()
                time.sleep(0.5)  # the retry backoff of its error handler
                committed = self.position = max(self.position, self._committed(consumer))
                consumer.assign([TopicPartition(TOPIC, 0, self.position)])
        finally:
            consumer.close()

    # --- the protocol ------------------------------------------------------------------

    def _delivered(self, error: Any, message: Any, offsets: list[int] | None) -> None:
        if error is not None:
            return
        offset = int(message.offset())
        self.produced_end = max(self.produced_end, offset + 1)
        if offsets is not None:
            offsets.append(offset)

    def _new_consumer(self) -> Any:
        from confluent_kafka import Consumer

        return Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": GROUP,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )

    def _committed(self, consumer: Any) -> int:
        from confluent_kafka import TopicPartition

        found = consumer.committed([TopicPartition(TOPIC, 0)], timeout=10)
        return max(int(found[0].offset), 0)

    def _commit(self, consumer: Any, offset: int) -> int:
        from confluent_kafka import TopicPartition

        consumer.commit(offsets=[TopicPartition(TOPIC, 0, offset)], asynchronous=False)
        return offset


def dead_letters(bootstrap: str) -> list[tuple[int, bytes]]:
    """What the dead-letter topic holds: ``(original offset, value)`` of each copy."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "drill-reader", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(DEAD_LETTER, 0, 0)])
    found: list[tuple[int, bytes]] = []
    try:
        while (message := consumer.poll(1.0)) is not None:
            if message.error():
                continue
            headers = {header[0]: header[1] for header in message.headers() or []}
            offset = headers.get("suture-original-offset") or b"-1"
            found.append((int(offset), message.value() or b""))
    finally:
        consumer.close()
    return found


def _decodes(value: bytes | None) -> bool:
    try:
        json.loads((value or b"").decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return True
