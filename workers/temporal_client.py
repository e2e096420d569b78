"""One way to reach Temporal, so every process encodes payloads the same way.

Workflow and activity inputs are pydantic models (see :mod:`suture.models`); a
client without the pydantic data converter would write histories a worker cannot
read. :class:`LazyClient` connects lazily and once, which lets the ingress
start, and answer 503, while Temporal is still down. :func:`temporal_runtime`
is the SDK runtime every process uses: its core logs go through Python logging,
and the worker's also serves the SDK's metrics (a runtime is fixed when a client
connects with it, so it is built first).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.service import RetryConfig, TLSConfig

from suture.errors import ConfigError, SutureError


class TemporalUnavailable(SutureError):
    """Temporal could not be reached; the request may be retried later."""


def temporal_runtime(metrics_address: str | None = None) -> Runtime:
    """An SDK runtime whose core logs warnings through ``temporalio.core``.

    Args:
        metrics_address: ``host:port`` where the SDK's Prometheus exporter listens; None for none.
            Names follow Prometheus conventions (``_total``, ``_seconds``).
    """
    core = LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )
    metrics = None
    if metrics_address is not None:
        metrics = PrometheusConfig(
            bind_address=metrics_address,
            counters_total_suffix=True,
            unit_suffix=True,
            durations_as_seconds=True,
        )
    return Runtime(telemetry=TelemetryConfig(logging=core, metrics=metrics))


async def connect(
    address: str,
    namespace: str = "default",
    *,
    tls: bool = False,
    tls_cert: Path | str | None = None,
    tls_key: Path | str | None = None,
    tls_ca: Path | str | None = None,
    tls_server_name: str | None = None,
    api_key: str | None = None,
    retry_config: RetryConfig | None = None,
    connect_timeout: timedelta | None = None,
    lazy: bool = False,
    runtime: Runtime | None = None,
) -> Client:
    """Connect a client that carries suture's pydantic models.

    TLS is on when ``tls`` is true or any of the TLS files is given; ``tls_cert``
    and ``tls_key`` together enable mTLS. ``runtime`` is the default one when omitted.

    Raises:
        ConfigError: only one of ``tls_cert`` and ``tls_key`` is given, or a file is unreadable.
        TemporalUnavailable: the server did not answer (not raised when ``lazy``).
    """
    try:
        return await Client.connect(
            address,
            namespace=namespace,
            data_converter=pydantic_data_converter,
            tls=_tls_config(tls, tls_cert, tls_key, tls_ca, tls_server_name),
            api_key=api_key,
            retry_config=retry_config,
            connect_timeout=connect_timeout,
            lazy=lazy,
            runtime=runtime,
        )
    except RuntimeError as error:
        raise TemporalUnavailable(
            f"cannot reach Temporal at {address} ({error}); start the embedded one with `suture up`, "
            "or point TEMPORAL_ADDRESS at your cluster"
        ) from error


def _tls_config(
    enabled: bool,
    cert: Path | str | None,
    key: Path | str | None,
    ca: Path | str | None,
    server_name: str | None,
) -> TLSConfig | bool:
    if (cert is None) != (key is None):
        raise ConfigError("a TLS client certificate and its key must be given together for mTLS")
    if not (enabled or cert or ca or server_name):
        return False
    return TLSConfig(
        server_root_ca_cert=_read(ca),
        client_cert=_read(cert),
        client_private_key=_read(key),
        domain=server_name,
    )


def _read(path: Path | str | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read TLS file {path}: {error.strerror}") from error


class TemporalSettings(Protocol):
    """Where Temporal is; :class:`suture.config.Settings` is one."""

    @property
    def temporal_address(self) -> str: ...
    @property
    def temporal_namespace(self) -> str: ...
    @property
    def temporal_tls_cert(self) -> Path | None: ...
    @property
    def temporal_tls_key(self) -> Path | None: ...
    @property
    def temporal_tls_ca(self) -> Path | None: ...


async def connect_settings(
    settings: TemporalSettings,
    *,
    retry_config: RetryConfig | None = None,
    lazy: bool = False,
    runtime: Runtime | None = None,
) -> Client:
    """:func:`connect` with the address, namespace and TLS files of ``settings``.

    Raises:
        ConfigError: a TLS file is unreadable, or only one of cert and key is set.
        TemporalUnavailable: the server did not answer (not raised when ``lazy``).
    """
    return await connect(
        settings.temporal_address,
        settings.temporal_namespace,
        tls_cert=settings.temporal_tls_cert,
        tls_key=settings.temporal_tls_key,
        tls_ca=settings.temporal_tls_ca,
        retry_config=retry_config,
        lazy=lazy,
        runtime=runtime,
    )


class LazyClient:
    """Connects on first use and hands out the same client afterwards.

    A failed connection is not kept: the next call tries again, so a process that
    started before Temporal recovers on its own. Once connected, the SDK reconnects
    by itself. ``LazyClient(lambda: connect_settings(settings))`` is what the
    ingress takes as its client provider.
    """

    def __init__(self, connect: Callable[[], Awaitable[Client]]) -> None:
        self._connect = connect
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> Client:
        """Raises: TemporalUnavailable when the server does not answer."""
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await self._connect()
        return self._client
