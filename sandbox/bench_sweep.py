"""``suture bench sweep``: a fleet of 10,000 workloads with 30 days of hourly history, swept once.

What is timed is what a user waits for: from the schedule firing (``temporal
schedule trigger``) to the last candidate decided (its child run closed; the bench
policy is dry-run, so a candidate's run decides and records, it does not wait for
a verification window). Seeding is not timed: the workloads are created and their
history is backfilled with promtool into the Prometheus TSDB before Prometheus
starts, as in the drills.

The fleet: 10,000 Deployments in the Kubernetes emulator (its own process), 2%
of them idle (candidates), the rest busy; all labelled. Deployments rather than
moto instances: moto filters its whole store on every ``DescribeInstances`` page,
so at 10,000 instances it times the emulator, not suture.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sandbox.bench_stack import BENCH_POLICIES, BenchStack, kube_command, moto_command
from sandbox.history import Series, backfill, busy, idle
from suture.fleet import SweepResult
from suture.models import LoopResult
from workers.schedules import SWEEP_SCHEDULE_ID, ensure_sweep_schedule

Progress = Callable[[str], Any] | None
NAMESPACE = "bench-fleet"
LABELS = {"env": "dev", "owner": "bench", "fleet": "bench"}


def _seed(kube_api: Any, count: int, idle_share: float) -> list[Series]:
    """``count`` Deployments in the emulator, ``idle_share`` of them idle; their utilisation series."""
    from kubernetes.client import AppsV1Api

    apps = AppsV1Api(kube_api)
    idle_count = int(count * idle_share)

    def create(index: int) -> Series:
        name = f"bench-{index:05}"
        body = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {**LABELS, "app": name}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": "registry.example/bench:1",
                                "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
                            }
                        ]
                    },
                },
            },
        }
        apps.create_namespaced_deployment(NAMESPACE, body, _preload_content=False)  # type: ignore[arg-type]
        return Series("deployment", NAMESPACE, name, "cpu", idle(0.01) if index < idle_count else busy())

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(create, range(count)))


class SweepBenchStack(BenchStack):
    """The bench stack with a 10,000-instance fleet and its history in Prometheus from the start."""

    def __init__(self, state_dir: Path, *, workloads: int, idle_share: float, **options: Any) -> None:
        super().__init__(state_dir, **options)
        self.workloads = workloads
        self.idle_share = idle_share
        self.seed_s: dict[str, float] = {}

    async def _start_estate(self) -> None:
        from sandbox.aws import ADMIN, MotoSandbox
        from sandbox.bench_stack import RemoteKube
        from sandbox.monitoring import Monitoring

        os.environ.setdefault("AWS_ACCESS_KEY_ID", ADMIN[0])
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", ADMIN[1])
        logs = self.state_dir / "servers"
        kube = await self._serve("kube-emulator", kube_command, logs)
        self.kube = RemoteKube(kube.url)
        self.kube_api = self.kube.api_client()
        moto = await self._serve("moto", moto_command, logs)
        self.aws = MotoSandbox.connect(moto.url)
        started = time.monotonic()
        series = await asyncio.to_thread(_seed, self.kube_api, self.workloads, self.idle_share)
        self.seed_s["deployments_s"] = round(time.monotonic() - started, 1)

        def history(tsdb: Path) -> None:
            began = time.monotonic()
            backfill(series, tsdb, int(time.time()), self.state_dir / "history")
            self.seed_s["promtool_backfill_s"] = round(time.monotonic() - began, 1)

        self.monitoring = Monitoring(
            self.state_dir / "monitoring",
            f"{self.ingress_url}/alerts/alertmanager",
            self.token,
            history=history,
        )
        self.on_stop(lambda: asyncio.to_thread(self.monitoring.stop))
        await asyncio.to_thread(self.monitoring.start)


async def _fired_sweep(stack: SweepBenchStack) -> str:
    handle = stack.client.get_schedule_handle(SWEEP_SCHEDULE_ID)
    for _ in range(600):
        actions = (await handle.describe()).info.recent_actions
        if actions:
            return str(actions[-1].action.workflow_id)  # type: ignore[attr-defined]
        await asyncio.sleep(0.05)
    raise TimeoutError("the schedule did not start a sweep within 30 s")


async def sweep(
    count: int | None = None, progress: Progress = None, idle_share: float = 0.02
) -> dict[str, Any]:
    """Seed ``count`` workloads (10,000 by default), fire the schedule, wait for the last candidate's run."""
    count = count or 10_000
    say = progress or (lambda _message: None)
    with tempfile.TemporaryDirectory(prefix="suture-bench-sweep-") as state_dir:
        say(f"seeding {count} instances in moto and 30 days of hourly history with promtool ...")
        async with SweepBenchStack(
            Path(state_dir),
            sandbox=True,
            policy_dirs=[BENCH_POLICIES],
            workloads=count,
            idle_share=idle_share,
        ) as stack:
            await ensure_sweep_schedule(stack.client, stack.task_queue, paused=True)
            sampler = stack.sampler().start()
            say("firing the sweep schedule")
            fired = time.monotonic()
            await stack.client.get_schedule_handle(SWEEP_SCHEDULE_ID).trigger()
            sweep_id = await _fired_sweep(stack)
            result: SweepResult = await stack.client.get_workflow_handle(
                sweep_id, result_type=SweepResult
            ).result()
            swept = time.monotonic()
            runs = await asyncio.gather(
                *(
                    stack.client.get_workflow_handle(run.workflow_id, result_type=LoopResult).result()
                    for run in result.candidates
                    if run.started
                )
            )
            decided = time.monotonic()
            peaks = sampler.stop()
    seconds = decided - fired
    return {
        "benchmark": "sweep",
        "workloads": result.fleet_size,
        "days": 30,
        "candidates": len(result.candidates),
        "child_runs": len(runs),
        "seconds": round(seconds, 2),
        "sweep_seconds": round(swept - fired, 2),
        "workloads_per_s": round(result.fleet_size / seconds, 1),
        "peak_rss_mib": peaks,
        "seeding": stack.seed_s,
        "counts": result.counts,
    }
