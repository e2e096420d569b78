"""Activation stages: how far a loop may write, whatever its policies' modes say.

A loop earns the right to write before any per-action trust applies. Each loop
climbs four stages, one at a time, each with its gate:

=============  ============================================  =====================================
stage          what the loop does                            gate to the next stage
=============  ============================================  =====================================
read_only      detects and decides; every run ends dry_run   read path complete and fresh, held
                                                             for the read_only period (30 days)
dry_run        records "would have done", acts on nothing    held for the dry_run period (14 days);
                                                             logged actions ≤ 5% of workloads on
                                                             every day of it; write permissions held
live_scoped    acts inside its scope only (the resource      held for the live_scoped period
               loop on non-production workloads; the other   (30 days); closure rate ≥ 80% over it
               loops have no scope yet and stay dry_run)
live           the policy's mode stands                      -
=============  ============================================  =====================================

The cap comes after every other decision (the policy, the track record): it only
ever lowers a mode. Everything here is pure, so workflows import it and the CLI
evaluates the gates from evidence the readiness activities gather.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import Field

from suture.models import Contract, Loop, Mode, PlannedAction

MAX_DRY_RUN_RATE = 0.05
"""Logged (would-have) actions per day, as a share of the workloads, above which detection is too loose."""
MIN_CLOSURE_RATE = 0.80
"""Closure rate a loop must reach in ``live_scoped`` before it goes ``live``."""
ACTING = (Mode.SUPERVISED, Mode.AUTONOMOUS)
PROPAGATION = "suture.propagation"
"""Evidence source of a verification lag: seconds from the action to the signal showing it."""


class Stage(StrEnum):
    """How far a loop may write, from least to most."""

    READ_ONLY = "read_only"
    DRY_RUN = "dry_run"
    LIVE_SCOPED = "live_scoped"
    LIVE = "live"

    @property
    def following(self) -> Stage | None:
        """The stage after this one; None at ``live``."""
        order = list(Stage)
        index = order.index(self)
        return order[index + 1] if index + 1 < len(order) else None


LIVE_SCOPE: dict[Loop, str] = {
    Loop.RESOURCE: "non-production workloads (env tag not a production value)",
    Loop.RELIABILITY: "nothing yet: the loop records what it would do, as in dry_run",
    Loop.SECURITY: "nothing yet: the loop records what it would do, as in dry_run",
}
"""What ``live_scoped`` lets each loop act on. The resource loop goes first: lowest blast radius."""


class StageQuery(Contract):
    """Ask the stage of ``loop`` (argument of ``governance.stage``)."""

    loop: Loop


class StageState(Contract):
    """A loop's stage, since when, set by whom. ``configured`` is false for a store's default."""

    loop: Loop
    stage: Stage
    since: datetime | None = None
    by: str = ""
    reason: str = ""
    configured: bool = False


class StagePeriods(Contract):
    """How long each stage must hold before the next, in days (the texts' 30/14/30)."""

    read_only: float = Field(default=30.0, ge=0)
    dry_run: float = Field(default=14.0, ge=0)
    live_scoped: float = Field(default=30.0, ge=0)

    def of(self, stage: Stage) -> float:
        return float(getattr(self, stage.value)) if stage != Stage.LIVE else 0.0


def cap_mode(stage: Stage, mode: Mode, in_scope: bool = False) -> Mode:
    """The mode a run may use at ``stage``: ``mode``, or ``dry_run`` where the stage forbids acting.

    ``in_scope`` says whether the run's target lies in the loop's ``live_scoped`` scope.
    """
    if mode not in ACTING or stage == Stage.LIVE:
        return mode
    if stage == Stage.LIVE_SCOPED and in_scope:
        return mode
    return Mode.DRY_RUN


# --- gates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """One condition of a stage change: held or not, what was measured, how to make it hold."""

    name: str
    passed: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class StageEvidence:
    """What the gates of a loop's next stage are judged on (gathered by the readiness activities).

    Attributes:
        held_days: how long the current stage has held.
        read_blocked: read-path lines (reachability, history, coverage, freshness) that are blocked.
        write_blocked: write permissions the loop's actions need and the identity lacks.
        logged_per_day: would-have actions (dry-run runs) of the loop per day over the period.
        workloads: the fleet the daily rate is a share of.
        closure: (resolved, attempted) runs of the loop over the period.
    """

    held_days: float
    read_blocked: Sequence[str] = ()
    write_blocked: Sequence[str] = ()
    logged_per_day: Sequence[tuple[str, int]] = ()
    workloads: int = 0
    closure: tuple[int, int] = (0, 0)


def gates_for(current: Stage, evidence: StageEvidence, periods: StagePeriods) -> list[Gate]:
    """The gates between ``current`` and the stage after it (none at ``live``)."""
    target = current.following
    if target is None:
        return []
    needed = periods.of(current)
    gates = [
        Gate(
            "period",
            evidence.held_days >= needed,
            f"{current} held {evidence.held_days:.1f} of {needed:g} days",
            f"wait until {current} has held {needed:g} days (the period is configurable)",
        ),
        Gate(
            "read path",
            not evidence.read_blocked,
            "complete and fresh" if not evidence.read_blocked else "; ".join(evidence.read_blocked),
            "fix the blocked lines of `suture readiness`",
        ),
    ]
    if current == Stage.DRY_RUN:
        gates.append(_write_gate(evidence))
        gates.append(_rate_gate(evidence))
    if current == Stage.LIVE_SCOPED:
        gates.append(_write_gate(evidence))
        gates.append(_closure_gate(evidence))
    return gates


def _write_gate(evidence: StageEvidence) -> Gate:
    missing = "; ".join(evidence.write_blocked)
    return Gate(
        "write permissions",
        not evidence.write_blocked,
        f"missing: {missing}" if missing else "every permission the loop's actions need is held",
        "grant what `suture permissions --iam|--rbac` prints to the worker's identity",
    )


def _rate_gate(evidence: StageEvidence) -> Gate:
    if evidence.workloads <= 0:
        return Gate("dry-run rate", False, "no workloads counted", "check the fleet inventory")
    worst_day, worst = max(evidence.logged_per_day, key=lambda day: day[1], default=("-", 0))
    rate = worst / evidence.workloads
    return Gate(
        "dry-run rate",
        rate <= MAX_DRY_RUN_RATE,
        f"{worst} logged actions on {worst_day} = {rate:.1%} of {evidence.workloads} workloads "
        f"(at most {MAX_DRY_RUN_RATE:.0%} per day)",
        "tighten detection (thresholds, windows, policy matches) before going live",
    )


def _closure_gate(evidence: StageEvidence) -> Gate:
    resolved, attempted = evidence.closure
    if attempted == 0:
        return Gate("closure rate", False, "no run acted in the period", "let the loop act in its scope")
    rate = resolved / attempted
    return Gate(
        "closure rate",
        rate >= MIN_CLOSURE_RATE,
        f"{resolved} of {attempted} runs closed = {rate:.0%} (at least {MIN_CLOSURE_RATE:.0%})",
        "expand coverage only where the loop closes; fix or retire the policies that escalate",
    )


def parse_periods(text: str) -> StagePeriods:
    """``30/14/30`` (days of read_only/dry_run/live_scoped) as :class:`StagePeriods`."""
    read_only, dry_run, live_scoped = (float(part) for part in text.split("/"))
    return StagePeriods(read_only=read_only, dry_run=dry_run, live_scoped=live_scoped)


# --- write permissions, asked of the systems -------------------------------------------


class PermissionQuery(Contract):
    """Does the worker's identity hold what ``actions`` need? (``readiness.write_permissions``)."""

    actions: list[PlannedAction]


class PermissionVerdict(Contract):
    """What the systems answered: permissions missing, and those nobody could be asked about."""

    missing: list[str] = []
    unverified: list[str] = []
