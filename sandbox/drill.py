"""The drill contract: what every drill reports, and the registry of drills.

``DrillResult`` is the project's own copy of the drill-result contract (one object
per drill; ``suture demo --json`` wraps them as ``{drills, passed, failed}``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from suture.models import Mode

if TYPE_CHECKING:
    from sandbox.stack import Stack


class DrillAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    target: str
    mode: Literal[Mode.DRY_RUN, Mode.SUPERVISED, Mode.AUTONOMOUS]
    compensated: bool


class DrillResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario: str
    loop: Literal["reliability", "security", "resource"]
    expected: str
    outcome: Literal["resolved", "escalated", "rolled_back", "dry_run", "rejected", "suppressed", "no_action"]
    passed: bool
    workflow_id: str | None
    mttr_s: float | None
    verified: bool
    escalated: bool
    human_touched: bool
    actions: list[DrillAction]
    savings_usd_month: float | None = None
    checks: dict[str, bool] = {}
    detail: str = ""


class DemoReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    drills: list[DrillResult]
    passed: int
    failed: int


@dataclass(frozen=True)
class Drill:
    """One scenario: set the estate up, let the signal flow, check what suture did."""

    name: str
    loop: Literal["reliability", "security", "resource"]
    expected: str
    description: str
    run: Callable[[Stack], Awaitable[DrillResult]]
    exclusive: bool = False
    """Changes something every run reads (a loop's stage): runs alone, after the others."""


DRILLS: dict[str, Drill] = {}


def drill(  # type: ignore[no-untyped-def]
    name: str,
    loop: Literal["reliability", "security", "resource"],
    expected: str,
    description: str,
    exclusive: bool = False,
):
    """Register the decorated coroutine as a drill."""

    def register(run: Callable[[Stack], Awaitable[DrillResult]]) -> Callable[[Stack], Awaitable[DrillResult]]:
        DRILLS[name] = Drill(name, loop, expected, description, run, exclusive)
        return run

    return register
