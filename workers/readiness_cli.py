"""``suture readiness`` and ``suture stage``: is each loop ready to write, and how far may it.

Both run without Temporal: the checks are the activities of
:mod:`activities.readiness`, called directly with clients built from the
settings (:mod:`workers.providers`), and the stage lives in the audit store.
Raising a stage goes one step at a time through its gates (``advance``);
lowering one (``lower``) is always allowed, because it only takes authority away.
Both are audited under ``--as``.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from suture.errors import ConfigError, SutureError
from suture.models import Loop
from suture.stages import Stage, parse_periods

if TYPE_CHECKING:
    from activities.readiness import Readiness
    from suture.config import Settings
    from suture.store import AuditStore

USAGE = "suture stage LOOP | suture stage advance LOOP --as NAME | suture stage lower LOOP STAGE --as NAME"


def readiness_for(
    settings: "Settings",
    store: "AuditStore",
    *,
    kube_api: Any | None = None,
    aws: Any | None = None,
    prometheus_url: str | None = None,
    policy_dirs: Sequence[Path] | None = None,
) -> "Readiness":
    """The inventory over the clients ``settings`` name; a drill passes its sandbox's clients instead."""
    from activities.prometheus import connect
    from activities.readiness import PermissionProbe, Readiness
    from activities.utilisation import FleetAnalyst
    from policies.loading import load_policies
    from workers.providers import aws_containment, kubernetes_client
    from workers.resource_worker import aws_regions

    why_not: dict[str, str] = {}
    if kube_api is None:
        try:
            kube_api = kubernetes_client(settings)
        except ConfigError as error:
            why_not["kubernetes"] = str(error)
    aws = aws if aws is not None else aws_containment()
    prometheus = connect(prometheus_url or settings.prometheus_url)
    folders = list(policy_dirs or settings.policy_dirs)
    fleet = FleetAnalyst(prometheus, ec2=aws.client, regions=aws_regions(), kube_api=kube_api)
    return Readiness(
        store=store,
        prometheus=prometheus,
        permissions=PermissionProbe(kube_api, aws.client),
        fleet=fleet,
        kube_api=kube_api,
        aws_client=aws.client,
        policies=load_policies(folders),
        policy_dirs=folders,
        default_stage=Stage(settings.default_stage),
        telemetry_freshness_s=settings.telemetry_freshness_s,
        audit_lag_s=settings.audit_lag_s,
        why_not=why_not,
    )


def policy_windows(policy_dirs: Sequence[Path]) -> dict[str, float]:
    """Each loaded policy's propagation window in seconds, by name (for the verification lag table)."""
    from policies.loading import load_policies

    return _windows(load_policies(policy_dirs))


def _windows(policies: Sequence[Any]) -> dict[str, float]:
    found = {}
    for policy in policies:
        window = getattr(getattr(policy, "verify", None), "window", None)
        if isinstance(window, int | float):
            found[policy.name] = float(window)
    return found


def window_warnings(store: "AuditStore", policies: Sequence[Any], days: float = 30.0) -> list[str]:
    """Policies whose window is shorter than the p90 verification lag measured over ``days``."""
    from datetime import UTC, datetime, timedelta

    from suture.report import verification_lags

    until = datetime.now(UTC)
    measured = verification_lags(store, until - timedelta(days=days), until, _windows(policies))
    return [
        f"policy {item.policy}: window {item.window_s:g}s is shorter than the measured verification lag "
        f"(p90 {item.p90_s:.1f}s, median {item.median_s:.1f}s over {item.runs} runs in {days:g} days); "
        "verify could read the signal before the action shows in it"
        for item in measured
        if item.window_too_short
    ]


def register(app: typer.Typer, cli: Any) -> None:
    """Add ``readiness`` and ``stage`` to the ``suture`` command; ``cli`` is :mod:`workers.cli`."""

    @app.command()
    def readiness(
        loop: Annotated[
            str | None, typer.Argument(help="reliability, security or resource; omit for all.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    ) -> None:
        """The prerequisites inventory: per loop, what is available or blocked, why, and the fix."""
        loops = [_loop(loop)] if loop else list(Loop)
        report = cli._with_store(lambda store: readiness_for(cli._settings(), store).report(loops))
        if as_json:
            cli._print_json(report.model_dump(mode="json"))
            return
        for item in report.loops:
            since = item.stage_since.isoformat(timespec="seconds") if item.stage_since else "the start"
            cli.console.print(f"[bold]{item.loop}[/bold] loop, stage {item.stage} since {since}")
            table = Table("check", "status", "detail", "fix")
            for line in item.lines:
                mark = "[green]available[/green]" if line.status == "available" else "[red]blocked[/red]"
                table.add_row(line.check, mark, line.detail, line.fix or "-")
            cli.console.print(table)

    @app.command(context_settings={"allow_interspersed_args": True})
    def stage(
        words: Annotated[list[str], typer.Argument(help="LOOP | advance LOOP | lower LOOP STAGE")],
        as_: Annotated[
            str | None, cli._as_option("Your name; the audit trail records who moved the stage.")
        ] = None,
        force: Annotated[bool, typer.Option(help="Advance past failing gates (audited with them).")] = False,
        reason: Annotated[str, typer.Option(help="Why.")] = "",
        as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    ) -> None:
        """A loop's activation stage (read_only → dry_run → live_scoped → live): show, advance, lower."""
        verb, loop, target = _parse(words)
        if verb != "show" and not as_:
            cli.errors.print("[red]error:[/red] --as NAME is required: the audit trail records who moved it")
            raise typer.Exit(2)
        settings = cli._settings()
        periods = cli._run(lambda: parse_periods(settings.stage_periods))
        if verb == "lower":
            _lower(cli, loop, target, as_ or "", reason)
            return
        if verb == "advance":
            _advance(cli, loop, periods, as_ or "", force, reason, as_json)
            return
        state, gates = cli._with_store(lambda store: readiness_for(settings, store).gates(loop, periods))
        shown = {
            "loop": str(loop),
            "stage": str(state.stage),
            "since": state.since.isoformat() if state.since else None,
            "set_by": state.by or None,
            "next": str(state.stage.following) if state.stage.following else None,
            "gates": [gate.__dict__ for gate in gates],
        }
        if as_json:
            cli._print_json(shown)
            return
        following = state.stage.following
        cli.console.print(
            f"{loop} loop: stage [bold]{state.stage}[/bold] since {shown['since'] or 'the start'}"
            + (f" (set by {state.by})" if state.by else "")
        )
        if following is None:
            cli.console.print("live: every policy's mode stands")
            return
        table = Table("gate to " + str(following), "holds", "evidence", "fix")
        for gate in gates:
            table.add_row(
                gate.name, "[green]yes[/green]" if gate.passed else "[red]no[/red]", gate.detail, gate.fix
            )
        cli.console.print(table)


def _advance(cli: Any, loop: Loop, periods: Any, by: str, force: bool, reason: str, as_json: bool) -> None:
    from activities.readiness import StageRefused, advance

    settings = cli._settings()

    def move(store: "AuditStore") -> Any:
        try:
            return advance(readiness_for(settings, store), loop, periods, by, force=force, reason=reason)
        except StageRefused as refused:
            raise SutureError(str(refused)) from None

    state, gates = cli._with_store(move)
    if as_json:
        cli._print_json({"loop": str(loop), "stage": str(state.stage), "gates": [g.__dict__ for g in gates]})
        return
    forced = " (forced past failing gates, audited)" if any(not gate.passed for gate in gates) else ""
    cli.console.print(f"the {loop} loop is now at {state.stage}, moved by {by}{forced}")


def _lower(cli: Any, loop: Loop, target: Stage, by: str, reason: str) -> None:
    settings = cli._settings()

    def move(store: "AuditStore") -> Any:
        current = store.stage(loop, Stage(settings.default_stage)).stage
        order = list(Stage)
        if order.index(target) > order.index(current):
            raise SutureError(f"{target} is above {current}: raise a stage with `suture stage advance`")
        return store.set_stage(loop, target, by=by, reason=reason)

    state = cli._with_store(move)
    cli.console.print(f"the {loop} loop is now at {state.stage}, moved by {by}")


def _loop(text: str) -> Loop:
    try:
        return Loop(text)
    except ValueError:
        raise typer.BadParameter(f"no loop {text!r}; known: {', '.join(Loop)}") from None


def _parse(words: list[str]) -> tuple[str, Loop, Stage]:
    """``LOOP``, ``LOOP advance``, ``advance LOOP`` or ``lower LOOP STAGE``."""
    if len(words) == 1:
        return "show", _loop(words[0]), Stage.LIVE
    if len(words) == 2 and "advance" in words:
        return "advance", _loop(words[1] if words[0] == "advance" else words[0]), Stage.LIVE
    if len(words) == 3 and words[0] == "lower":
        try:
            return "lower", _loop(words[1]), Stage(words[2])
        except ValueError:
            raise typer.BadParameter(f"no stage {words[2]!r}; known: {', '.join(Stage)}") from None
    raise typer.BadParameter(f"expected {USAGE}")
