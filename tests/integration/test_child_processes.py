"""The servers a stack starts die with the process that runs it, even when it is SIGKILLed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux's"),
]

ROOT = Path(__file__).resolve().parents[2]

# Each server is started on a thread that has ended by the time the host reports,
# as asyncio.to_thread does in the stack: the children must outlive that thread.
HOST = """
import json, sys, threading, time
from pathlib import Path
state = Path(sys.argv[1])
servers = []

def start_all():
    from workers.devserver import DevServer
    servers.append(DevServer(state / "temporal", headless=True).start())
    if sys.argv[2] == "monitoring":
        from sandbox.monitoring import Monitoring
        servers.append(Monitoring(state / "monitoring", "http://127.0.0.1:9/alerts", "token").start())

starter = threading.Thread(target=start_all)
starter.start()
starter.join()
print(json.dumps({"started": len(servers)}), flush=True)
time.sleep(600)
"""


def children_of(pid: int) -> set[int]:
    """Every live descendant of ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(stat[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: read after the last ')'.
    return text[text.rindex(")") + 2 :].split()


@pytest.fixture
def host(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOST, str(tmp_path), request.param],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    yield process
    process.kill()
    process.wait()


def kill_and_wait_for_orphans(host: subprocess.Popen[str]) -> tuple[set[int], set[int]]:
    """SIGKILL the host; return its children before, and those still alive a while after."""
    assert host.stdout is not None
    started = json.loads(host.stdout.readline())
    assert started["started"] >= 1
    children = children_of(host.pid)
    host.send_signal(signal.SIGKILL)
    host.wait()
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    return children, {pid for pid in children if alive(pid)}


@pytest.mark.parametrize("host", ["devserver"], indirect=True)
def test_the_dev_server_stops_when_its_host_is_killed(host: subprocess.Popen[str]) -> None:
    children, survivors = kill_and_wait_for_orphans(host)

    assert children, "the dev server was not running after the thread that started it ended"
    assert survivors == set()


@pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("prometheus-alertmanager") is None,
    reason="Prometheus and Alertmanager come from Debian's packages (make monitoring)",
)
@pytest.mark.parametrize("host", ["monitoring"], indirect=True)
def test_prometheus_and_alertmanager_stop_when_their_host_is_killed(host: subprocess.Popen[str]) -> None:
    children, survivors = kill_and_wait_for_orphans(host)

    assert len(children) >= 3, "the dev server, Prometheus and Alertmanager should all have been running"
    assert survivors == set()
