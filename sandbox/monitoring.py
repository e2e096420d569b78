"""Real Prometheus and Alertmanager for the sandbox, on free loopback ports.

Drills and integration tests need the signal to travel the way it does in
production: an exporter is scraped, a rule fires, Alertmanager groups the alert
and posts a v4 webhook to the ingress with a bearer token. So this module runs the
real binaries (Debian's ``prometheus`` and ``prometheus-alertmanager``) as
subprocesses with generated configuration, everything kept in one state directory:
configs, TSDB, Alertmanager's silences and one log file per process.

Time is compressed rather than faked: scrapes and rule evaluation every second,
Alertmanager's ``group_wait``/``group_interval`` at 1 s. Scrape targets live in a
``file_sd`` JSON file that Prometheus re-reads as soon as it changes, so services
can come and go while Prometheus runs without a reload. Prometheus 2.42 hands
discovered targets to its scrapers at most every 5 s, so a target added (or
removed) takes about 5-6 s to be scraped (or dropped), at start-up too;
:meth:`Monitoring.wait_until_scraped` waits for it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
import yaml

from sandbox.ports import LOOPBACK, free_port
from suture.errors import ConfigError, SutureError
from workers.child_processes import start_child, stop_child

PROMETHEUS_ENV = "SUTURE_PROMETHEUS_BIN"
ALERTMANAGER_ENV = "SUTURE_ALERTMANAGER_BIN"
INSTALL_HINT = "install them with `apt-get install prometheus prometheus-alertmanager`"
PORT_ATTEMPTS = 3


class MonitoringError(SutureError):
    """Prometheus or Alertmanager did not start, or stopped answering."""


def find_binary(env: str, name: str) -> str:
    """Locate a binary: ``$env`` if set, else ``name`` on PATH, else ``/usr/bin/name``.

    Raises:
        ConfigError: the binary is missing; the message says how to install it.
    """
    configured = os.environ.get(env)
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise ConfigError(f"{env}={configured} is not an executable file; fix it or unset {env}")
        return found
    found = shutil.which(name) or shutil.which(f"/usr/bin/{name}")
    if found is None:
        raise ConfigError(
            f"{name} was not found on PATH nor in /usr/bin; {INSTALL_HINT}, or set {env} to its path"
        )
    return found


@dataclass
class _Process:
    """One supervised server: its command line, log file and readiness URL."""

    binary: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    def start(self, args: list[str]) -> None:
        self.log = self.log_path.open("ab")
        # Ends with the process that runs the sandbox, even when that one is SIGKILLed.
        self.process = start_child(
            [self.binary, *args], stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def wait_ready(self, url: str, timeout_s: float) -> bool:
        """Poll ``url/-/ready``. Returns False if the process exited first."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise MonitoringError(
            f"{self.binary} did not become ready at {url} within {timeout_s:.0f}s; see {self.log_path}"
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        stop_child(self.process, timeout_s)
        self.process = None
        if self.log is not None:
            self.log.close()
            self.log = None

    def log_tail(self, lines: int = 5) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.strip().splitlines()[-lines:])


class Monitoring:
    """Prometheus and Alertmanager wired to the sandbox exporters and a webhook.

    Use it as ``with Monitoring(...) as monitoring:`` (or ``async with``, which
    starts and stops the processes on a thread), or call :meth:`start` and
    :meth:`stop`.

    Args:
        state_dir: where configs, data and logs go; created if missing.
        webhook_url: where Alertmanager posts its v4 webhook payloads.
        webhook_token: the bearer token Alertmanager sends with them.
        retention: how long Prometheus keeps samples.
        history: called with Prometheus's TSDB folder before Prometheus starts, to
            backfill past samples (e.g. 30 days of utilisation); retention then
            becomes at least 45 days so the blocks are not deleted on sight.
        ready_timeout_s: how long each process may take to answer ``/-/ready``.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        webhook_url: str,
        webhook_token: str,
        *,
        retention: str = "2h",
        ready_timeout_s: float = 30.0,
        history: Callable[[Path], None] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.webhook_url = webhook_url
        self.webhook_token = webhook_token
        self.retention = "45d" if history is not None else retention
        self.history = history
        self.ready_timeout_s = ready_timeout_s
        self._targets: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self._prometheus = _Process(
            find_binary(PROMETHEUS_ENV, "prometheus"), self.state_dir / "prometheus.log"
        )
        self._alertmanager = _Process(
            find_binary(ALERTMANAGER_ENV, "prometheus-alertmanager"), self.state_dir / "alertmanager.log"
        )
        self._prometheus_port: int | None = None
        self._alertmanager_port: int | None = None

    @property
    def prometheus_url(self) -> str:
        return f"http://{LOOPBACK}:{self._port(self._prometheus_port, 'Prometheus')}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://{LOOPBACK}:{self._port(self._alertmanager_port, 'Alertmanager')}"

    @property
    def targets_file(self) -> Path:
        return self.state_dir / "targets.json"

    def _port(self, port: int | None, what: str) -> int:
        if port is None:
            raise MonitoringError(f"{what} is not running; call Monitoring.start() first")
        return port

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> Monitoring:
        """Start Alertmanager, then Prometheus, and wait until both are ready.

        Raises:
            MonitoringError: a process exited or did not become ready; the message
                names the binary and its log file.
        """
        if self._prometheus_port is not None:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._write_targets()
        (self.state_dir / "rules.yaml").write_text(
            resources.files("sandbox").joinpath("rules.yaml").read_text()
        )
        try:
            self._alertmanager_port = self._launch(self._alertmanager, self._alertmanager_args)
            if self.history is not None:
                self.history(self.state_dir / "prometheus")
            self._prometheus_port = self._launch(self._prometheus, self._prometheus_args)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate both processes and wait for them to exit."""
        self._prometheus.stop()
        self._alertmanager.stop()
        self._prometheus_port = self._alertmanager_port = None

    def _launch(self, server: _Process, args_for: Any) -> int:
        """Start ``server`` on a free port, picking another if that one was taken meanwhile."""
        for _ in range(PORT_ATTEMPTS):
            port = free_port()
            server.start(args_for(port))
            if server.wait_ready(f"http://{LOOPBACK}:{port}", self.ready_timeout_s):
                return port
            tail = server.log_tail()
            server.stop()
            if "address already in use" not in tail:
                break
        raise MonitoringError(f"{server.binary} exited during start-up; see {server.log_path}:\n{tail}")

    def _alertmanager_args(self, port: int) -> list[str]:
        config = self.state_dir / "alertmanager.yml"
        config.write_text(yaml.safe_dump(self._alertmanager_config(), sort_keys=False))
        return [
            f"--config.file={config}",
            f"--storage.path={self.state_dir / 'alertmanager'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            # An empty address turns clustering off; otherwise every instance wants port 9094.
            "--cluster.listen-address=",
        ]

    def _prometheus_args(self, port: int) -> list[str]:
        config = self.state_dir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self._prometheus_config(), sort_keys=False))
        return [
            f"--config.file={config}",
            f"--storage.tsdb.path={self.state_dir / 'prometheus'}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--web.enable-lifecycle",
        ]

    def _alertmanager_config(self) -> dict[str, Any]:
        return {
            "route": {
                "receiver": "suture",
                "group_by": ["alertname", "namespace", "service"],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "5m",
            },
            "receivers": [
                {
                    "name": "suture",
                    "webhook_configs": [
                        {
                            "url": self.webhook_url,
                            "send_resolved": True,
                            "http_config": {
                                "authorization": {"type": "Bearer", "credentials": self.webhook_token}
                            },
                        }
                    ],
                }
            ],
        }

    def _prometheus_config(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(self.state_dir / "rules.yaml")],
            "alerting": {
                "alertmanagers": [
                    {"static_configs": [{"targets": [f"{LOOPBACK}:{self._alertmanager_port}"]}]}
                ]
            },
            "scrape_configs": [
                {
                    "job_name": "sandbox",
                    # The exporters label their own series; keep those labels as they are.
                    "honor_labels": True,
                    "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}],
                }
            ],
        }

    def reload(self) -> None:
        """Ask Prometheus to re-read its configuration and rule files."""
        httpx.post(f"{self.prometheus_url}/-/reload", timeout=10.0).raise_for_status()

    # --- scrape targets ---------------------------------------------------------------

    def add_target(self, address: str, labels: Mapping[str, str]) -> None:
        """Scrape ``address`` (``host:port``) from now on, labelling it with ``labels``.

        Prometheus picks the change up within about 6 s; see :meth:`wait_until_scraped`.
        """
        with self._lock:
            self._targets[address] = dict(labels)
            self._write_targets()

    def remove_target(self, address: str) -> None:
        """Stop scraping ``address``; removing an unknown target does nothing."""
        with self._lock:
            if self._targets.pop(address, None) is not None:
                self._write_targets()

    def _write_targets(self) -> None:
        groups = [{"targets": [address], "labels": labels} for address, labels in self._targets.items()]
        self.state_dir.mkdir(parents=True, exist_ok=True)
        scratch = self.targets_file.with_suffix(".json.tmp")
        scratch.write_text(json.dumps(groups, indent=2))
        # Prometheus watches the file; a rename means it never reads half a file.
        scratch.replace(self.targets_file)

    def wait_until_scraped(self, address: str, timeout_s: float = 15.0) -> None:
        """Block until Prometheus has scraped ``address`` successfully.

        Raises:
            MonitoringError: the target was not up within ``timeout_s``.
        """
        query = f'up{{instance="{address}"}} == 1'
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            response = httpx.get(f"{self.prometheus_url}/api/v1/query", params={"query": query}, timeout=5)
            if response.status_code == 200 and response.json()["data"]["result"]:
                return
            time.sleep(0.2)
        raise MonitoringError(
            f"Prometheus did not scrape {address} within {timeout_s:.0f}s; "
            f"see {self.prometheus_url}/targets and {self._prometheus.log_path}"
        )

    # --- context managers --------------------------------------------------------------

    def __enter__(self) -> Monitoring:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Monitoring:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)
