"""A Prometheus exporter per simulated service, reporting its state at scrape time.

Each service of the estate gets its own HTTP server on its own loopback port, so
that Prometheus sees one target per service and stopping a service's exporter
really takes that target down: its series go stale (Prometheus writes staleness
markers once the scrape fails) exactly as they would for a crashed pod. That is
what the stale-metrics drill relies on, which is why :meth:`ServiceExporter.stop`
closes the listening socket rather than just muting the metrics.

:class:`TrafficExporter` plays a service mesh's telemetry: ``istio_requests_total``
counters with source and destination workload labels, as Istio's sidecars
report them, for the dependency graph to observe who calls whom.

Values are computed when Prometheus scrapes, from a callable returning the
service's current :class:`~sandbox.model.Observation`, so the estate never has to
push anything. ``None`` means the service has nothing to report and the exporter
answers with an empty page.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sandbox.model import Observation
from sandbox.ports import LOOPBACK

Observe = Callable[[], Observation | None]
ExtraMetrics = Callable[[], Mapping[str, float]]
"""Additional gauges by name, e.g. ``{"sandbox_disk_inode_ratio": 0.97}`` for a drill."""

LABELS = ("namespace", "service", "deployment")

GAUGES: tuple[tuple[str, str, Callable[[Observation], float]], ...] = (
    (
        "sandbox_request_latency_p99_seconds",
        "99th percentile request latency.",
        lambda o: o.latency_p99_s,
    ),
    ("sandbox_error_ratio", "Share of requests answered with an error.", lambda o: o.error_ratio),
    ("sandbox_memory_bytes", "Resident memory of the service.", lambda o: o.memory_bytes),
    (
        "sandbox_saturation_ratio",
        "Load divided by the capacity of the running replicas.",
        lambda o: o.saturation_ratio,
    ),
    ("sandbox_replicas", "Replicas running.", lambda o: o.replicas),
)


class _ServiceCollector(Collector):
    def __init__(self, labels: dict[str, str], observe: Observe, extra: ExtraMetrics | None) -> None:
        self._labels = labels
        self._observe = observe
        self._extra = extra

    def describe(self) -> list[Metric]:
        # Declaring nothing keeps the registry from scraping at registration time.
        return []

    def collect(self) -> Iterator[Metric]:
        observation = self._observe()
        if observation is None:
            return
        names, values = list(self._labels), list(self._labels.values())
        for name, documentation, read in GAUGES:
            yield _gauge(name, documentation, names, values, read(observation))
        yield _gauge(
            "sandbox_build_info",
            "Image the service runs; always 1.",
            [*names, "image"],
            [*values, observation.image],
            1.0,
        )
        for name, value in (self._extra() if self._extra else {}).items():
            yield _gauge(name, "Drill-specific metric.", names, values, value)


def _gauge(name: str, documentation: str, names: list[str], values: list[str], value: float) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=names)
    family.add_metric(values, float(value))
    return family


class ServiceExporter:
    """Serve one service's metrics at ``http://<address>/metrics`` until stopped.

    Args:
        namespace: Kubernetes namespace of the service; a label on every series.
        service: the service's name; a label on every series.
        observe: called at every scrape; returns what the service reports now, or
            ``None`` to serve no series.
        deployment: the Deployment behind the service, ``service`` when omitted.
        extra: called at every scrape for additional gauges, carrying the same labels.
        host: the address to listen on; loopback by default.
    """

    def __init__(
        self,
        namespace: str,
        service: str,
        observe: Observe,
        *,
        deployment: str | None = None,
        extra: ExtraMetrics | None = None,
        host: str = LOOPBACK,
    ) -> None:
        self.labels = {"namespace": namespace, "service": service, "deployment": deployment or service}
        self.host = host
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_ServiceCollector(self.labels, observe, extra))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"the exporter of {self.name} is not running")
        return int(self._server.server_port)

    @property
    def address(self) -> str:
        """``host:port``, the form Prometheus uses for a scrape target."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    @property
    def name(self) -> str:
        return f"{self.labels['namespace']}/{self.labels['service']}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> ServiceExporter:
        """Listen on a free port of ``host``; starting a running exporter does nothing."""
        if self._server is None:
            self._server, self._thread = start_http_server(0, addr=self.host, registry=self._registry)
        return self

    def stop(self) -> None:
        """Stop serving and close the port, so scrapes are refused from now on."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> ServiceExporter:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


MESH_LABELS = (
    "reporter",
    "source_workload_namespace",
    "source_workload",
    "destination_workload_namespace",
    "destination_workload",
    "response_code",
)


class _TrafficCollector(Collector):
    def __init__(self, calls: Callable[[], Mapping[tuple[str, str], float]]) -> None:
        self._calls = calls
        self._since = time.monotonic()

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        documentation = "Requests between workloads, as the mesh reports them."
        family = CounterMetricFamily("istio_requests_total", documentation, labels=MESH_LABELS)
        elapsed = time.monotonic() - self._since
        for (source, target), rate in sorted(self._calls().items()):
            source_ns, _, source_name = source.partition("/")
            target_ns, _, target_name = target.partition("/")
            labels = ["source", source_ns, source_name, target_ns, target_name, "200"]
            family.add_metric(labels, rate * elapsed)
        yield family


class TrafficExporter(ServiceExporter):
    """The mesh's view of the estate: one ``istio_requests_total`` counter per call edge.

    Args:
        calls: called at every scrape; ``{("ns/caller", "ns/callee"): requests per second}``.
            A counter grows at its rate since the exporter started, so ``rate()`` reads it back.
    """

    def __init__(self, calls: Callable[[], Mapping[tuple[str, str], float]], *, host: str = LOOPBACK) -> None:
        super().__init__("mesh", "istio-telemetry", lambda: None, host=host)
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_TrafficCollector(calls))
