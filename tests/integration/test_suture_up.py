"""``suture up`` as a user runs it: without an escalation webhook, a briefing lands in its log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import httpx
import pytest

from workers.devserver import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "suture-up-test-token"
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: nowhere, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: nobody, user: {token: none}}]
contexts: [{name: nowhere, context: {cluster: nowhere, user: nobody}}]
current-context: nowhere
"""


class Output:
    """Lines a process writes to one stream, collected on a thread as they come."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        threading.Thread(target=self._collect, args=(stream,), daemon=True).start()

    def _collect(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, process: subprocess.Popen[str], timeout_s: float = 90) -> None:
        until(lambda: text in self.text or process.poll() is not None, timeout_s)
        assert text in self.text, f"never printed {text!r}:\n{self.text}"


def until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.fixture
def suture_up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Output, Output, int]]:
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    ingress_port = free_port()
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("SUTURE_", "TEMPORAL_"))},
        "PYTHONPATH": str(ROOT),
        "SUTURE_STATE_DIR": str(tmp_path / "state"),
        "SUTURE_WEBHOOK_TOKEN": TOKEN,
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "SUTURE_INGRESS_PORT": str(ingress_port),
        "KUBECONFIG": str(tmp_path / "kubeconfig"),
        "PROMETHEUS_URL": "http://127.0.0.1:9",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "workers", "up", "--ui-port", str(free_port())],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        yield process, Output(process.stdout), Output(process.stderr), ingress_port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def novel_alert() -> dict[str, object]:
    labels = {"alertname": "SutureUpNovelAlert", "namespace": "shop", "service": "ledger"}
    return {
        "version": "4",
        "groupKey": "suture-up-test",
        "status": "firing",
        "receiver": "suture",
        "groupLabels": {"alertname": "SutureUpNovelAlert"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.invalid",
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": "ledger writes failing"},
                "startsAt": datetime.now(UTC).isoformat(),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": "5e7c0ffee0ddba11",
            }
        ],
    }


def test_without_a_webhook_suture_up_prints_an_escalated_runs_briefing_to_its_log(
    suture_up: tuple[subprocess.Popen[str], Output, Output, int],
) -> None:
    process, stdout, stderr, ingress_port = suture_up
    stdout.wait_for("Ctrl-C stops everything.", process)
    assert "briefings" in stdout.text and "logged here" in stdout.text

    response = httpx.post(
        f"http://127.0.0.1:{ingress_port}/alerts/alertmanager",
        json=novel_alert(),
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert response.status_code < 300, response.text

    stderr.wait_for("SutureUpNovelAlert on shop/ledger: suture stopped and needs a human", process)
    assert "escalation (SUTURE_ESCALATION_WEBHOOK is not set" in stderr.text
    assert "why suture stopped: no policy matches SutureUpNovelAlert" in stderr.text
    assert "impact: ledger writes failing" in stderr.text
