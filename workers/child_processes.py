"""Server subprocesses that die with the process that started them.

``suture up`` and the drill stack run servers as subprocesses (the Temporal dev
server; in the sandbox Prometheus and Alertmanager) and stop them on the way out.
A SIGKILL skips that way out, so on Linux each child also asks the kernel to send
it SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``, set between fork and
exec). SIGTERM rather than SIGKILL lets the servers close their databases cleanly.

The kernel ties that signal to the *thread* that forked the child, not to the
process: a child forked on a thread of ``asyncio.to_thread``'s pool would be sent
SIGTERM as soon as the pool shuts its thread down, with the stack still running.
So every child is forked on one daemon thread that lives as long as the process.

Other platforms get a plain ``Popen``: the children are still stopped on every
orderly exit, only not after a SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

PR_SET_PDEATHSIG = 1
"""From ``<linux/prctl.h>``."""

DEATH_SIGNAL = signal.SIGTERM


def start_child(command: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(command, **popen)``, set up to be terminated when this process dies.

    Raises:
        OSError: as ``Popen`` does, e.g. when the binary is missing.
    """
    if not sys.platform.startswith("linux"):
        return subprocess.Popen(list(command), **popen)
    return _Forker.shared().call(
        lambda: subprocess.Popen(list(command), preexec_fn=_die_with(os.getpid()), **popen)
    )


def stop_child(process: subprocess.Popen[bytes] | None, timeout_s: float = 10.0) -> None:
    """SIGTERM ``process`` and wait; SIGKILL it after ``timeout_s``. Nothing when it already ended."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _die_with(parent_pid: int) -> Callable[[], None]:
    """The function the child runs between fork and exec."""
    # The running interpreter is linked against libc, so its own symbols include prctl.
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arrange() -> None:
        prctl(PR_SET_PDEATHSIG, int(DEATH_SIGNAL), 0, 0, 0)
        # The parent may have died between fork and prctl; then nobody will signal us.
        if os.getppid() != parent_pid:
            os._exit(1)

    return arrange


class _Forker:
    """The one long-lived thread every child is forked on."""

    _instance: _Forker | None = None
    _guard = threading.Lock()

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._requests: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="suture-child-forker", daemon=True).start()

    @classmethod
    def shared(cls) -> _Forker:
        with cls._guard:
            # A forked copy of this process has the object but not its thread.
            if cls._instance is None or cls._instance.pid != os.getpid():
                cls._instance = cls()
            return cls._instance

    def call(self, work: Callable[[], Any]) -> Any:
        done: Future[Any] = Future()
        self._requests.put((work, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            work, done = self._requests.get()
            try:
                done.set_result(work())
            except BaseException as error:
                done.set_exception(error)
