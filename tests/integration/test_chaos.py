"""Chaos: workers SIGKILLed at random moments while runs act, the server crashed and restarted.

Reliability runs stream through a real dev server (six open at any time, one in
three a regression the rollback does not fix) while the worker process is killed
and replaced again and again: sometimes with a successor already polling,
sometimes leaving nobody, once together with a crash of the server itself. A
kill can land anywhere: in a workflow task, in a local activity holding a lock,
between an action's side effect and its answer to Temporal.

Afterwards every run has closed with the outcome its target deserves, each
action's side effect happened exactly once per run (an activity may be called
again after a kill; the effect, keyed by the business idempotency key, may not),
every undo the failed verifications needed ran once, and no lock is left held.

The moments are random but seeded; the seed is printed and named in every
failure. ``SUTURE_CHAOS_KILLS=100`` kills a hundred times (default 20);
``SUTURE_CHAOS_SEED`` replays a seed's kill schedule (which step each kill then
hits still depends on the machine's timing).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from suture.identity import reliability_workflow_id
from suture.models import AlertNotice, LoopResult, Outcome, ReliabilityLoopInput
from tests.integration.durability_worker import Ledger
from tests.workflow.test_reliability_loop import POLICY
from workers.devserver import DevServer
from workers.temporal_client import connect
from workflows.reliability import ReliabilityLoop

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("SUTURE_CHAOS_KILLS", "20"))
SEED = int(os.environ.get("SUTURE_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
OPEN_RUNS = 6
LONGEST_LIFE_S = 1.5
"""A worker lives up to this long once its successor (if any) polls."""
TASK_TIMEOUT = timedelta(seconds=2)
HANG_S = 240
"""Far beyond any stall a kill can cause (an activity's 30 s timeout, a sticky queue's 5 s)."""


def seeded(message: str) -> str:
    return f"{message} (chaos seed {SEED}: rerun with SUTURE_CHAOS_SEED={SEED})"


def notice(index: int) -> AlertNotice:
    """Every third run's target is a regression its rollback does not fix."""
    service = f"bad-{index}" if index % 3 == 2 else f"checkout-{index}"
    now = datetime.now(UTC)
    return AlertNotice(
        fingerprint=uuid.uuid4().hex[:16],
        status="firing",
        labels={"alertname": "HighLatency", "namespace": "shop", "deployment": service, "service": service},
        starts_at=now,
        received_at=now,
    )


class Fleet:
    """Keeps ``OPEN_RUNS`` runs open until told to stop; remembers every run it may have started."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue
        self.runs: dict[str, AlertNotice] = {}
        self.open: set[str] = set()

    async def keep_open(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # The server is down for part of the test: a failed call just waits for the next tick.
            with suppress(RPCError, RuntimeError):
                await self._top_up()
            await asyncio.sleep(0.3)

    async def _top_up(self) -> None:
        for workflow_id in list(self.open):
            if not await self._running(workflow_id):
                self.open.discard(workflow_id)
        while len(self.open) < OPEN_RUNS:
            alert = notice(len(self.runs))
            workflow_id = reliability_workflow_id(alert)
            self.runs[workflow_id] = alert  # before the call: it may start and still raise
            self.open.add(workflow_id)
            await self.client.start_workflow(
                ReliabilityLoop.run,
                ReliabilityLoopInput(alert=alert),
                id=workflow_id,
                task_queue=self.task_queue,
                # A workflow task lost with a killed worker is handed out again after this
                # (Temporal's default is 10 s); it keeps runs moving between kills.
                task_timeout=TASK_TIMEOUT,
            )

    async def _running(self, workflow_id: str) -> bool:
        try:
            description = await self.client.get_workflow_handle(workflow_id).describe()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:  # its start was lost with the crash
                return False
            raise
        return description.status == WorkflowExecutionStatus.RUNNING

    async def results(self) -> dict[str, LoopResult]:
        """The result of every run that exists (a start the crash swallowed may not)."""
        found: dict[str, LoopResult] = {}
        for workflow_id in self.runs:
            handle = self.client.get_workflow_handle(workflow_id, result_type=LoopResult)
            try:
                found[workflow_id] = await handle.result()
            except RPCError as error:
                if error.status != RPCStatusCode.NOT_FOUND:
                    raise
        return found


class Workers:
    """Worker processes of the durability worker, sharing one journal and ledger."""

    def __init__(self, task_queue: str, policy: Path, journal: Path, ledger: Path) -> None:
        self.arguments = [task_queue, str(policy), str(journal), str(ledger)]
        self.address = ""
        self.alive: list[asyncio.subprocess.Process] = []
        self._drains: list[asyncio.Task[bytes]] = []

    async def spawn(self) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.integration.durability_worker",
            self.address,
            *self.arguments,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        self.alive.append(process)
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert line.strip() == b"polling", seeded(f"a worker did not start: {line!r}")
        self._drains.append(asyncio.create_task(process.stdout.read()))  # never let its pipe fill
        return process

    async def kill(self, process: asyncio.subprocess.Process) -> None:
        process.kill()  # SIGKILL: no shutdown, no goodbye to Temporal
        await process.wait()
        self.alive.remove(process)

    async def kill_all(self) -> None:
        for process in list(self.alive):
            await self.kill(process)


@asynccontextmanager
async def dev_server(state_dir: Path) -> AsyncIterator[list[DevServer]]:
    """The server in a one-item list, so a restart can swap it; stopped at the end whatever it is."""
    servers = [await asyncio.to_thread(DevServer(state_dir, headless=True).start)]
    try:
        yield servers
    finally:
        servers[0].stop()


async def crash_and_restart(servers: list[DevServer]) -> DevServer:
    crashed = servers[0]
    crashed.stop(timeout=0)  # SIGTERM and SIGKILL at once: a crash, not a shutdown
    servers[0] = DevServer(crashed.state_dir, port=crashed.port, headless=True)
    return await asyncio.to_thread(servers[0].start)


async def test_runs_survive_random_worker_kills_and_a_server_crash_acting_exactly_once(
    tmp_path: Path,
) -> None:
    print(seeded(f"{KILLS} kills"))
    rng = random.Random(SEED)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace("{mode}", "autonomous").replace("window: 30s", "window: 2s"))
    queue, ledger = f"chaos-{uuid.uuid4().hex}", Ledger(tmp_path / "ledger")
    workers = Workers(queue, policy, tmp_path / "journal", tmp_path / "ledger")
    async with dev_server(tmp_path / "temporal") as servers:
        workers.address = servers[0].address
        fleet = Fleet(await connect(servers[0].address), queue)
        stop_feeding = asyncio.Event()
        feeding = asyncio.create_task(fleet.keep_open(stop_feeding))
        try:
            current = await workers.spawn()
            for kill in range(1, KILLS + 1):
                if kill == KILLS // 2:
                    await workers.kill_all()
                    server = await crash_and_restart(servers)
                    fleet.client = await connect(server.address)
                    current = await workers.spawn()
                    continue
                successor = await workers.spawn() if rng.random() < 0.5 else None
                await asyncio.sleep(rng.uniform(0, LONGEST_LIFE_S))
                await workers.kill(current)
                current = successor or await workers.spawn()
            stop_feeding.set()
            await feeding
            results = await asyncio.wait_for(fleet.results(), HANG_S)
        except WorkflowFailureError as failure:
            raise AssertionError(seeded(f"a run failed: {failure.cause}")) from failure
        finally:
            stop_feeding.set()
            feeding.cancel()
            await workers.kill_all()

    assert len(results) >= OPEN_RUNS, seeded(f"only {len(results)} runs started")
    effects = Counter(line.split()[0] for line in ledger.effects.read_text().splitlines())
    for workflow_id, result in results.items():
        bad = fleet.runs[workflow_id].labels["service"].startswith("bad-")
        expected = Outcome.ESCALATED if bad else Outcome.RESOLVED
        assert result.outcome == expected, seeded(f"{workflow_id}: {result.outcome} ({result.reason})")
        assert [(a.type, a.compensated) for a in result.actions] == [("k8s.rollback", bad)], seeded(
            f"{workflow_id} took {result.actions}"
        )
        done = _effects_of(ledger, fleet.runs[workflow_id].fingerprint)
        assert done == (
            ["k8s.rollback_deployment", "k8s.restore_deployment"] if bad else ["k8s.rollback_deployment"]
        ), seeded(f"{workflow_id} had side effects {done}")
    assert sum(effects.values()) == sum(len(_effects_of(ledger, r.fingerprint)) for r in fleet.runs.values())
    assert ledger.held() == {}, seeded(f"locks left held: {ledger.held()}")
    calls = Counter((tmp_path / "journal").read_text().split())
    retried = calls["k8s.rollback_deployment"] + calls["k8s.restore_deployment"] - sum(effects.values())
    print(
        seeded(f"{len(results)} runs closed; {retried} do/undo calls repeated after kills, none acted twice")
    )


def _effects_of(ledger: Ledger, fingerprint: str) -> list[str]:
    return [line.split()[0] for line in ledger.effects.read_text().splitlines() if fingerprint in line]
