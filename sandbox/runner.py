"""Run drills on a fresh embedded stack, several at a time, and report."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox.drill import DRILLS, DemoReport, Drill, DrillResult
from sandbox.stack import Stack

CONCURRENCY = 4


def all_drills() -> dict[str, Drill]:
    import sandbox.reliability_drills

    with contextlib.suppress(ImportError):
        import sandbox.graph_drills
        import sandbox.readiness_drills
        import sandbox.resource_drills
        import sandbox.security_drills
        import sandbox.trust_drills  # noqa: F401
    return dict(DRILLS)


async def run_drills(
    names: list[str] | None,
    progress: Callable[[str], Any] | None = None,
    keep: Path | None = None,
) -> DemoReport:
    """Start a sandbox stack, run the drills, stop everything.

    Args:
        keep: a folder for the stack's state (Temporal, the audit store), emptied first
            and kept afterwards, so ``suture report`` and ``suture policy backtest`` can
            read the drills' history with ``SUTURE_STATE_DIR`` pointing there. A
            temporary folder, removed at the end, when None.
    """
    drills = all_drills()
    chosen = [drills[name] for name in (names or list(drills))]
    say = progress or (lambda _message: None)
    if keep is None:
        with tempfile.TemporaryDirectory(prefix="suture-drills-") as state_dir:
            return await _run_in(Path(state_dir), chosen, say)
    shutil.rmtree(keep, ignore_errors=True)
    keep.mkdir(parents=True)
    report = await _run_in(keep, chosen, say)
    say(f"the drills' history is kept in {keep}: SUTURE_STATE_DIR={keep} suture report")
    return report


async def _run_in(state_dir: Path, chosen: list[Drill], say: Callable[[str], Any]) -> DemoReport:
    say("starting Temporal, Prometheus, Alertmanager, the Kubernetes emulator and moto ...")
    async with Stack(state_dir, sandbox=True) as stack:
        return await run_on(stack, chosen, say)


async def run_on(stack: Stack, drills: list[Drill], say: Callable[[str], Any]) -> DemoReport:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(drill: Drill) -> DrillResult:
        async with gate:
            say(f"drill {drill.name}: running")
            result = await _guarded(drill, stack)
            say(f"drill {drill.name}: {result.outcome} ({'passed' if result.passed else 'FAILED'})")
            return result

    shared = [drill for drill in drills if not drill.exclusive]
    results = list(await asyncio.gather(*(one(drill) for drill in shared)))
    for alone in [drill for drill in drills if drill.exclusive]:  # a loop's stage is everyone's
        results.append(await one(alone))
    passed = sum(result.passed for result in results)
    return DemoReport(drills=list(results), passed=passed, failed=len(results) - passed)


async def _guarded(drill: Drill, stack: Stack) -> DrillResult:
    """A drill that crashes is a failed drill with the reason, not a crashed demo."""
    try:
        return await drill.run(stack)
    except Exception as error:
        return DrillResult(
            scenario=drill.name,
            loop=drill.loop,
            expected=drill.expected,
            outcome="no_action",
            passed=False,
            workflow_id=None,
            mttr_s=None,
            verified=False,
            escalated=False,
            human_touched=False,
            actions=[],
            detail=f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}",
        )
