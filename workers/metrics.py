"""The worker's ``/metrics``: suture's run metrics and the Temporal SDK's, on one port.

Prometheus scrapes one target per worker. The run metrics (:mod:`suture.metrics`)
live in this process; the SDK's own worker metrics (task slots, poll latencies,
activity and workflow task outcomes) come from its Rust core, which serves them
with its Prometheus exporter. That exporter listens on a loopback port of its
own, and every scrape of the worker's endpoint reads it and appends its families,
so neither a second scrape job nor a second open port is needed.

``SUTURE_METRICS_PORT`` (default 9464) sets the port; ``0`` turns the endpoint off.
"""

from __future__ import annotations

import logging
import os
import socket
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import ProcessCollector, start_http_server
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from suture.errors import ConfigError
from suture.metrics import REGISTRY

log = logging.getLogger(__name__)

DEFAULT_PORT = 9464
PORT_VARIABLE = "SUTURE_METRICS_PORT"


def metrics_port(environ: Mapping[str, str] | None = None) -> int:
    """The port ``SUTURE_METRICS_PORT`` names (9464 when unset; 0 means no endpoint).

    Raises:
        ConfigError: the value is not a port number.
    """
    raw = (os.environ if environ is None else environ).get(PORT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_PORT
    if not raw.isdigit() or int(raw) > 65535:
        raise ConfigError(f"{PORT_VARIABLE} must be a port number (0-65535), not {raw!r}")
    return int(raw)


def embedded_metrics_port(environ: Mapping[str, str] | None = None) -> int:
    """The port for ``suture up``: as :func:`metrics_port`, but a free one when 9464 is taken
    and the variable is unset (two embedded stacks on one machine should both start).

    Raises:
        ConfigError: the value is not a port number.
    """
    port = metrics_port(environ)
    if (os.environ if environ is None else environ).get(PORT_VARIABLE, "").strip() or _free(port):
        return port
    from workers.devserver import free_port

    return free_port()


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class SdkMetrics(Collector):
    """The Temporal SDK exporter's families, read from its loopback address at scrape time."""

    def __init__(self, address: str) -> None:
        self.url = f"http://{address}/metrics"

    def collect(self) -> Iterator[Metric]:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as answer:
                text = answer.read().decode()
        except OSError as error:
            log.debug("Temporal SDK metrics unreadable at %s: %s", self.url, error)
            return
        yield from text_string_to_metric_families(text)


class WorkerMetrics(Collector):
    """What the worker's endpoint serves: run metrics, process metrics, and the SDK's when given."""

    def __init__(self, sdk_address: str | None = None) -> None:
        self.parts: list[Any] = [REGISTRY, ProcessCollector(registry=None)]
        if sdk_address:
            self.parts.append(SdkMetrics(sdk_address))

    def collect(self) -> Iterator[Metric]:
        for part in self.parts:
            yield from part.collect()


class MetricsServer:
    """``/metrics`` on ``host:port`` in a thread of this process; :meth:`stop` closes it."""

    def __init__(self, host: str, port: int, sdk_address: str | None = None) -> None:
        self.host, self.port = host, port
        self.collector = WorkerMetrics(sdk_address)
        self._server: Any = None

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{shown}:{self.port}/metrics"

    def start(self) -> str:
        """Listen and return the URL to scrape.

        Raises:
            ConfigError: the port is taken.
        """
        try:
            self._server, _ = start_http_server(self.port, self.host, registry=self.collector)
        except OSError as error:
            raise ConfigError(
                f"cannot serve metrics on {self.host}:{self.port} ({error.strerror}); "
                f"set {PORT_VARIABLE} to a free port, or 0 for none"
            ) from error
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
