"""The ``suture`` command line.

Thin on purpose: each command parses its options, calls one function that does
the work, and prints either a Rich table for people or JSON (``--json``) for
machines. Errors suture raises on purpose print as one line naming the problem
and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import resource
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from suture.config import Settings
from suture.errors import SutureError

T = TypeVar("T")

app = typer.Typer(
    help="suture: closed-loop remediation on Temporal (detect, decide, act, verify, learn).",
    no_args_is_help=True,
    add_completion=False,
)
policy_app = typer.Typer(help="Policy files.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
app.add_typer(audit_app, name="audit")
sandbox_app = typer.Typer(help="The sandbox estate of `suture up --sandbox`.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
# Piped output (CI logs, make) gets room for the tables instead of 80 columns.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
WaitingRun = Annotated[str, typer.Argument(help="Workflow ID of the waiting run.")]


def _person(name: str | None) -> str | None:
    """Refuse a ``--as`` name outside the documented alphabet before anything is touched."""
    from rich.markup import escape

    from suture.people import InvalidName, person_name

    if name is None:
        return None
    try:
        return person_name(name)
    except InvalidName as error:
        errors.print(f"[red]error:[/red] --as: {escape(str(error))}", highlight=False)
        raise typer.Exit(2) from None


def _as_option(help_text: str) -> Any:
    return typer.Option("--as", help=help_text, callback=_person)


ApproverName = Annotated[str, _as_option("Your name, as the policy lists it.")]
Note = Annotated[str, typer.Option(help="Why.")]


@app.callback()
def _logging(ctx: typer.Context) -> None:
    """Diagnostics go to stderr, so ``--json`` output on stdout stays parseable.

    ``SUTURE_LOG_FORMAT=json`` makes every line one JSON object (see :mod:`suture.logs`).
    Only the long-running commands forward the SDK core's logs into Python logging:
    forwarding calls into Python from the core's own threads, and a short command
    (``suture approve``) that exits while such a call is under way aborts the
    interpreter with ``Fatal Python error: PyGILState_Release``. Short commands let
    the core write its few warnings to stderr itself.
    """
    from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

    from suture.logs import configure_logging, log_format
    from workers.temporal_client import temporal_runtime

    configure_logging(_run(log_format))
    if ctx.invoked_subcommand in LONG_RUNNING:
        Runtime.set_default(temporal_runtime(), error_if_already_set=False)
        return
    quiet = LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"), forwarding=None)
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=quiet)), error_if_already_set=False)


LONG_RUNNING = frozenset({"up", "worker", "ingress", "demo", "drill", "bench"})
"""Commands that run for long enough to forward the SDK core's logs (see :func:`_logging`)."""


def _run(work: Callable[[], Any]) -> Any:
    """Call ``work`` (running it to completion when it returns a coroutine).

    SIGTERM is treated like Ctrl-C, so a stopped demo or drill still stops the
    servers it started instead of leaving them behind.
    """
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        outcome = work()
        if asyncio.iscoroutine(outcome):
            return asyncio.run(outcome)
        return outcome
    except SutureError as error:
        # Escaped: messages quote things like pip's extras ('suture[sandbox]') that are not markup.
        errors.print(f"[red]error:[/red] {escape(str(error))}", highlight=False)
        raise typer.Exit(2) from None
    except ValidationError as error:
        # A bad argument that reached a model (a name, a note): one line, never a traceback.
        first = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or error.title
        errors.print(f"[red]error:[/red] {escape(where)}: {escape(first['msg'])}", highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        errors.print("interrupted")
        raise typer.Exit(130) from None


def _settings() -> Settings:
    return _run(Settings.from_env)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


async def _client(settings: Settings) -> Any:
    from workers.temporal_client import connect_settings

    return await connect_settings(settings)


# --- processes ------------------------------------------------------------------------


@app.command()
def up(
    sandbox: Annotated[
        bool, typer.Option(help="Also run the drill estate, so there is something to heal.")
    ] = False,
    ui_port: Annotated[int, typer.Option(help="Temporal UI port.")] = 8233,
) -> None:
    """Embedded stack: Temporal dev server and UI, worker, ingress. Ctrl-C stops it all."""
    from workers.runtime import run_up

    _run(lambda: run_up(_settings(), sandbox=sandbox, ui_port=ui_port, say=console.print))


@app.command()
def worker() -> None:
    """Run the worker against TEMPORAL_ADDRESS (an existing cluster)."""
    from workers.runtime import run_worker

    _run(lambda: run_worker(_settings(), say=console.print))


@app.command()
def ingress(
    host: Annotated[str | None, typer.Option(help="Listen address (SUTURE_INGRESS_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (SUTURE_INGRESS_PORT).")] = None,
    sqs_queue: Annotated[
        str | None, typer.Option(help="Also poll this SQS queue URL for AWS events.")
    ] = None,
    insecure_no_auth: Annotated[
        bool, typer.Option(help="Accept webhooks without a bearer token (local experiments only).")
    ] = False,
) -> None:
    """Run the HTTP ingress (Alertmanager webhook, AWS events) against TEMPORAL_ADDRESS."""
    from workers.runtime import run_ingress

    _run(
        lambda: run_ingress(
            _settings(),
            host=host,
            port=port,
            sqs_queue=sqs_queue,
            insecure=insecure_no_auth,
            say=console.print,
        )
    )


# --- drills ---------------------------------------------------------------------------


@app.command()
def demo(as_json: JsonFlag = False) -> None:
    """Start everything, sandbox included, run every drill and print a table.

    The drills' history (Temporal and the audit store) is kept in .suture/demo, emptied
    at each demo: SUTURE_STATE_DIR=.suture/demo suture report (or policy backtest) reads it.
    """
    from workers.sandbox_commands import run_drills

    keep = _settings().state_dir / "demo"
    report = _run(lambda: run_drills(None, progress=None if as_json else errors.print, keep=keep))
    if as_json:
        _print_json(report.model_dump(mode="json"))
    else:
        _drill_table(report.drills)
    raise typer.Exit(0 if report.failed == 0 else 1)


@app.command()
def drill(
    name: Annotated[str | None, typer.Argument(help="Drill to run; see --list.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the drills.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Run one drill end to end on a fresh sandbox."""
    from workers.sandbox_commands import all_drills, run_drills

    drills = _run(all_drills)
    if list_ or name is None:
        table = Table("drill", "loop", "expected", "what it shows")
        for item in drills.values():
            table.add_row(item.name, item.loop, item.expected, item.description)
        console.print(table)
        return
    if name not in drills:
        errors.print(f"[red]error:[/red] no drill {name!r}; known: {', '.join(drills)}")
        raise typer.Exit(2)
    report = _run(lambda: run_drills([name], progress=None if as_json else errors.print))
    if as_json:
        _print_json(report.drills[0].model_dump(mode="json"))
    else:
        _drill_table(report.drills)
    raise typer.Exit(0 if report.failed == 0 else 1)


def _drill_table(results: list[Any]) -> None:
    table = Table("drill", "loop", "expected", "outcome", "passed", "MTTR s", "actions")
    for result in results:
        actions = ", ".join(
            f"{a.type} {a.target}{' (undone)' if a.compensated else ''}" for a in result.actions
        )
        mttr = f"{result.mttr_s:.1f}" if result.mttr_s is not None else "-"
        mark = "[green]yes[/green]" if result.passed else "[red]NO[/red]"
        table.add_row(
            result.scenario, result.loop, result.expected, result.outcome, mark, mttr, actions or "-"
        )
    console.print(table)


@sandbox_app.command("fire")
def sandbox_fire(
    scenario: Annotated[str | None, typer.Argument(help="Scenario to fire; see --list.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the scenarios.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Make one scenario's fault happen on the running `suture up --sandbox`."""
    from workers.sandbox_commands import sandbox_request

    if list_ or scenario is None:
        listed = _run(lambda: sandbox_request(_settings(), "GET", "/scenarios"))
        if as_json:
            _print_json(listed)
            return
        table = Table("scenario", "policy", "what happens")
        for item in listed:
            table.add_row(item["name"], item["policy"], item["description"])
        console.print(table)
        return
    fired = _run(lambda: sandbox_request(_settings(), "POST", "/fire", {"scenario": scenario}))
    if as_json:
        _print_json(fired)
        return
    console.print(
        f"fired {scenario} (policy {fired['policy']}): the alert fires in Prometheus within seconds; "
        "watch the run in the Temporal UI, `suture pending` lists it if it waits for you"
    )


# --- humans in control ------------------------------------------------------------------


@app.command()
def pending(as_json: JsonFlag = False) -> None:
    """Runs waiting for an approval."""
    from workers.approvals import pending_runs

    async def work() -> list[Any]:
        return await pending_runs(await _client(_settings()))

    runs = _run(work)
    if as_json:
        _print_json([dataclasses.asdict(run) for run in runs])
        return
    table = Table("run", "policy", "would do", "approvers", "tier", "deadline")
    for run in runs:
        tier = f"{run.tier}/{run.tiers}" if run.tier is not None else "-"
        would = "; ".join(run.proposed_actions) or run.service
        table.add_row(
            run.workflow_id, run.policy or "-", would, ", ".join(run.approvers), tier, run.deadline or "-"
        )
    console.print(table if runs else "nothing is waiting for approval")


def _decide(verb: str, run: str, name: str, note: str) -> None:
    from suture.models import ApprovalAnswer, ApprovalDecision
    from workers.approvals import decide

    async def work() -> str:
        decision = ApprovalDecision(approver=name, note=note)
        return await decide(await _client(_settings()), run, ApprovalAnswer(verb), decision)

    policy = _run(work)
    console.print(f"{run} {verb}d by {name} (policy {policy})")


@app.command()
def approve(
    run: WaitingRun,
    as_: ApproverName,
    note: Note = "",
) -> None:
    """Approve a supervised action."""
    _decide("approve", run, as_, note)


@app.command()
def reject(
    run: WaitingRun,
    as_: ApproverName,
    note: Note = "",
) -> None:
    """Reject a supervised action; nothing is done."""
    _decide("reject", run, as_, note)


@app.command()
def undo(
    run: Annotated[str, typer.Argument(help="Workflow ID of a finished run.")],
    as_: ApproverName,
    note: Note = "",
) -> None:
    """Undo what a finished run did (its compensations), audited under your name."""
    from workers.approvals import order_undo

    async def work() -> str:
        return await order_undo(await _client(_settings()), run, as_, note)

    undo_id = _run(work)
    console.print(f"undo of {run} authorised for {as_}; running as {undo_id}")


LOOPS = ("reliability", "security", "resource")
LoopArgument = Annotated[
    str | None, typer.Argument(help="reliability, security or resource; omit for every loop.")
]


def _scope(loop: str | None) -> str:
    if loop is None:
        return "all"
    if loop not in LOOPS:
        errors.print(f"[red]error:[/red] no loop {loop!r}; known: {', '.join(LOOPS)} (omit it for all)")
        raise typer.Exit(2)
    return loop


def _with_store(work: Callable[[Any], T]) -> T:
    from suture.store import AuditStore

    def opened() -> T:
        store = AuditStore.from_settings(_settings())
        try:
            return work(store)
        finally:
            store.close()

    result: T = _run(opened)
    return result


@app.command()
def pause(
    loop: LoopArgument = None,
    as_: Annotated[str | None, _as_option("Your name; the audit trail records who paused.")] = None,
    reason: Annotated[str, typer.Option(help="Why; every run the switch stops repeats it.")] = "",
    status: Annotated[bool, typer.Option("--status", help="List the kill switches instead.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Kill switch: stop the next action of one loop, or of every loop, at once."""
    if status:
        _switch_status(as_json)
        return
    scope = _scope(loop)
    if not as_:
        errors.print("[red]error:[/red] --as NAME is required: the audit trail records who paused")
        raise typer.Exit(2)
    _with_store(lambda store: store.pause(scope, by=as_, reason=reason))
    which = "every loop" if scope == "all" else f"the {scope} loop"
    console.print(f"paused {which} as {as_}: no new action starts until `suture resume`")
    if scope in ("all", "resource"):
        _sweep_schedule_paused(True, f"paused by {as_}: {reason or 'kill switch'}")


@app.command()
def resume(
    as_: Annotated[str, _as_option("Your name; the audit trail records who resumed.")],
    loop: LoopArgument = None,
) -> None:
    """Release a kill switch. Resuming all leaves a loop paused by name paused."""
    scope = _scope(loop)
    _with_store(lambda store: store.resume(scope, by=as_))
    which = "every loop" if scope == "all" else f"the {scope} loop"
    console.print(f"resumed {which} as {as_}")
    if scope in ("all", "resource") and not _with_store(lambda store: store.switch_state("resource").paused):
        _sweep_schedule_paused(False, f"resumed by {as_}")


def _sweep_schedule_paused(paused: bool, note: str) -> None:
    """Pause or unpause the resource sweep's schedule beside the kill switch (which alone is binding)."""
    from workers.schedules import SWEEP_SCHEDULE_ID, set_sweep_paused

    async def work() -> bool:
        return await set_sweep_paused(await _client(_settings()), paused, note)

    try:
        changed = _run(work)
    except (typer.Exit, OSError, RuntimeError) as error:
        errors.print(f"the sweep schedule was not changed (is Temporal reachable?): {error}")
        return
    if changed:
        console.print(f"schedule {SWEEP_SCHEDULE_ID} {'paused' if paused else 'unpaused'}")


@app.command()
def sweep(
    now: Annotated[
        bool, typer.Option("--now", help="Start one resource sweep now, outside its schedule.")
    ] = False,
    scope: Annotated[
        list[str] | None, typer.Option(help="Only workloads with this tag/label, as key=value (repeatable).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the sweep and print what it found.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """One resource sweep outside its Temporal Schedule (the schedule is `suture-resource-sweep`)."""
    from workers.schedules import start_sweep

    if not now:
        errors.print("[red]error:[/red] say --now to start a sweep outside its schedule")
        raise typer.Exit(2)
    pairs = [item.partition("=") for item in scope or []]
    if any(not key or not sep for key, sep, _ in pairs):
        errors.print("[red]error:[/red] --scope takes key=value, e.g. --scope env=dev")
        raise typer.Exit(2)

    async def work() -> dict[str, Any]:
        settings = _settings()
        handle = await start_sweep(await _client(settings), settings.task_queue, {k: v for k, _, v in pairs})
        if not wait:
            return {"workflow_id": handle.id, "started": True}
        return dict((await handle.result()).model_dump(mode="json"))

    found = _run(work)
    if as_json:
        _print_json(found)
    elif "fleet_size" in found:
        console.print(f"sweep {found['workflow_id']}: {found['reason']}")
        for run in found["candidates"]:
            console.print(
                f"  {run['target']}: {run['mode']}, ${run['savings_usd_month']:,.2f}/month {run['note']}"
            )
    else:
        console.print(f"sweep started as {found['workflow_id']}")


def _switch_status(as_json: bool) -> None:
    switches = _with_store(lambda store: store.switches())
    if as_json:
        _print_json([switch._asdict() for switch in switches])
        return
    if not switches:
        console.print("no kill switch has been pulled: every loop may act")
        return
    table = Table("scope", "state", "by", "reason", "since")
    for switch in switches:
        state = "[red]paused[/red]" if switch.paused else "acting"
        table.add_row(
            switch.scope, state, switch.by, switch.reason or "-", switch.at.isoformat(timespec="seconds")
        )
    console.print(table)


# --- policy, audit, report, bench -----------------------------------------------------------


@policy_app.command("check")
def policy_check(
    files: Annotated[list[Path], typer.Argument(help="Policy YAML files.")],
    against_history: Annotated[
        bool,
        typer.Option(
            "--against-history",
            help="Also warn where a propagation window is shorter than the measured verification lag.",
        ),
    ] = False,
) -> None:
    """Validate policy files as the worker would; print every problem with file:line.

    Exits 2 when any file has a problem (names used twice across the files included).
    """
    from rich.markup import escape

    from policies.loading import check_policy_files

    loaded, problems = check_policy_files(files)
    for entry in loaded:
        policy = entry.policy
        console.print(f"{entry.path}: {policy.name} ({policy.loop}, {policy.mode}) version {policy.version}")
    if against_history:
        from workers.readiness_cli import window_warnings

        policies = [entry.policy for entry in loaded]
        for warning in _with_store(lambda store: window_warnings(store, policies)):
            errors.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    for problem in problems:
        errors.print(f"[red]error:[/red] {escape(str(problem))}", highlight=False, soft_wrap=True)
    if problems:
        errors.print(f"{len(problems)} problem(s) found")
        raise typer.Exit(2)


@policy_app.command("promotions")
def policy_promotions(
    as_json: JsonFlag = False,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="First recompute every track record from the audit trail.")
    ] = False,
) -> None:
    """Action classes whose supervised track record earns autonomy, with the evidence (never applied)."""
    from policies.loading import load_policies
    from suture import trust_store
    from workers.trust_commands import promotions

    settings = _settings()
    policies = _run(lambda: load_policies(settings.policy_dirs))

    def work(store: Any) -> list[Any]:
        if rebuild:
            trust_store.rebuild(store)
        return promotions(store, policies)

    found = _with_store(work)
    if as_json:
        _print_json([item.model_dump(mode="json") for item in found])
        return
    table = Table("policy", "action", "mode", "supervised ok", "needed", "recommend", "why")
    for item in found:
        mark = "[green]promote[/green]" if item.recommended else "-"
        table.add_row(
            item.policy,
            item.action,
            str(item.current),
            str(item.supervised_successes),
            str(item.needed),
            mark,
            item.why,
        )
    console.print(table)


@policy_app.command("promote")
def policy_promote(
    policy: Annotated[str, typer.Argument(help="Policy name.")],
    action: Annotated[str, typer.Argument(help="Action class, e.g. k8s.rollback.")],
    as_: Annotated[str, _as_option("Your name, for the audit trail.")],
    reason: Annotated[str, typer.Option(help="Why (default: the evidence).")] = "",
) -> None:
    """Let one action class of a policy act without approval from now on (audited; the file stays)."""
    from policies.loading import load_policies
    from workers.trust_commands import promote

    settings = _settings()
    policies = _run(lambda: load_policies(settings.policy_dirs))
    standing = _with_store(lambda store: promote(store, policies, policy, action, as_, reason))
    console.print(f"{action} of {policy} promoted to autonomous by {as_} ({standing.why})")


@app.command()
def feedback(
    run: Annotated[str, typer.Argument(help="Workflow ID of a finished run or escalation.")],
    verdict: Annotated[str, typer.Argument(help="useful, wrong or unnecessary.")],
    as_: Annotated[str, _as_option("Your name, for the audit trail.")],
    note: Note = "",
) -> None:
    """Judge a run: counted in its track record and shadow score; wrong on an autonomous run demotes it."""
    from workers.trust_commands import feedback as give

    demoted = _with_store(lambda store: give(store, run, as_, verdict, note))
    console.print(f"{run} judged {verdict} by {as_}")
    for item in demoted:
        console.print(f"{item} demoted to supervised")


@app.command("except")
def except_(
    target: Annotated[str | None, typer.Argument(help="Target, e.g. shop/checkout or shop/*.")] = None,
    as_: Annotated[str | None, _as_option("Your name, for the audit trail.")] = None,
    reason: Annotated[str, typer.Option(help="Why the target is exempt.")] = "",
    until: Annotated[
        str | None, typer.Option(help="Until when: 2026-12-01 or 2026-12-01T18:00 (UTC).")
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the exceptions.")] = False,
    remove: Annotated[bool, typer.Option("--remove", help="End the target's exception now.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Exempt a target from actions until a date: its runs escalate instead. Expiry needs nothing."""
    from suture import trust_store
    from workers.trust_commands import exception_rows, loop_of_target, parse_until

    if list_ or target is None:
        rows = _with_store(exception_rows)
        if as_json:
            _print_json(rows)
            return
        table = Table("target", "until", "by", "reason", "state")
        for row in rows:
            state = "active" if row["active"] else "ended"
            table.add_row(
                row["target"], row["until"].isoformat(timespec="minutes"), row["by"], row["reason"], state
            )
        console.print(table if rows else "no exceptions")
        return
    if not as_:
        errors.print("[red]error:[/red] --as NAME is required: the audit trail records who did it")
        raise typer.Exit(2)
    loop = loop_of_target(target)
    if remove:
        count = _with_store(lambda store: trust_store.remove_exception(store, loop, target, as_))
        console.print(f"ended {count} exception(s) of {target}")
        return
    if until is None or not reason:
        errors.print("[red]error:[/red] an exception needs --until DATE and --reason")
        raise typer.Exit(2)
    when = _run(lambda: parse_until(until))
    _with_store(lambda store: trust_store.add_exception(store, loop, target, as_, reason, when))
    console.print(
        f"{target} is exempt from actions until {when.isoformat(timespec='minutes')}: its runs escalate"
    )


@app.command()
def unlock(
    target: Annotated[str, typer.Argument(help="The locked target, e.g. shop/checkout.")],
    as_: Annotated[str, _as_option("Your name, for the audit trail.")],
    reason: Annotated[str, typer.Option(help="Why.")] = "",
    force: Annotated[bool, typer.Option(help="Take the lock even from a run still open.")] = False,
) -> None:
    """Release a target's lock left by a run that was terminated (it never released it)."""
    from suture.store import AuditStore

    store = AuditStore.from_settings(_settings())
    holder = store.lock_holder(target)
    if holder is None:
        console.print(f"{target} is not locked")
        return
    if not force:
        _run(lambda: _refuse_if_open(holder))
    store.break_lock(target, as_, reason)
    console.print(f"lock of {target} taken from {holder} by {as_}")


async def _refuse_if_open(workflow_id: str) -> None:
    """A lock held by a run still open is released by that run; taking it would let two act."""
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError, RPCStatusCode

    client = await _client(_settings())
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return
        raise SutureError(f"cannot tell whether {workflow_id} is still open: {error.message}") from None
    if description.status == WorkflowExecutionStatus.RUNNING:
        raise SutureError(
            f"{workflow_id} is still open and holds the lock; it releases it when it closes "
            "(--force takes it anyway)"
        )


@audit_app.command("verify")
def audit_verify(as_json: JsonFlag = False) -> None:
    """Check the keyed audit chain, its head file, and every runs row against the chain.

    Exit 1 when anything was rewritten, removed or added; 2 when the audit key is wrong.
    """
    from rich.markup import escape

    report = _with_store(lambda store: store.verify())
    if as_json:
        _print_json(report.model_dump(mode="json") | {"intact": report.intact})
    elif report.intact:
        console.print(f"audit chain intact: {report.summary()}", highlight=False)
    for broken in report.breaks if not as_json else []:
        errors.print(f"[red]audit chain broken[/red] at {escape(str(broken))}", highlight=False)
    if not report.intact:
        raise typer.Exit(1)


@app.command()
def permissions(
    iam: Annotated[
        bool, typer.Option("--iam", help="Print the least-privilege AWS IAM policy (JSON).")
    ] = False,
    rbac: Annotated[bool, typer.Option("--rbac", help="Print the Kubernetes ClusterRole (YAML).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """What the worker's identity needs, generated from the action registry."""
    from policies.actions.permissions import cluster_role, cluster_role_yaml, iam_policy
    from policies.registry import registered_actions

    if iam and rbac:
        errors.print("[red]error:[/red] choose one of --iam and --rbac")
        raise typer.Exit(2)
    if iam:
        _print_json(iam_policy())
    elif rbac and as_json:
        _print_json(cluster_role())
    elif rbac:
        typer.echo(cluster_role_yaml(), nl=False)
    elif as_json:
        _print_json({"iam": iam_policy(), "rbac": cluster_role()})
    else:
        table = Table("action", "loop", "max targets", "needs")
        for spec in registered_actions():
            table.add_row(spec.name, str(spec.loop), str(spec.max_targets), spec.permissions.describe())
        console.print(table)


@app.command()
def report(
    since: Annotated[str, typer.Option(help="Window: 90m, 24h, 7d or 1w.")] = "24h",
    html: Annotated[Path | None, typer.Option(help="Also write a standalone HTML report here.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The morning summary: what was fixed, why, by whom; closure rate, MTTR, auto-resolution."""
    import os

    from suture.report import DEFAULT_UI_URL, build_report, parse_window, render_html, render_table
    from suture.store import AuditStore
    from workers.readiness_cli import policy_windows

    window = _run(lambda: parse_window(since))
    settings = _settings()
    summary = build_report(
        AuditStore.from_settings(settings),
        window,
        ui_url=os.environ.get("TEMPORAL_UI_URL", DEFAULT_UI_URL),
        namespace=settings.temporal_namespace,
        windows=_run(lambda: policy_windows(settings.policy_dirs)),
    )
    if html is not None:
        html.write_text(render_html(summary), encoding="utf-8")
        errors.print(f"wrote {html}")
    if as_json:
        _print_json(summary.model_dump(mode="json"))
    else:
        render_table(summary, console)


@app.command()
def graph(
    service: Annotated[str | None, typer.Argument(help="namespace/name: only the edges around it.")] = None,
    refresh: Annotated[bool, typer.Option(help="Refresh the graph through Temporal first.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """The dependency graph: who calls whom, where each edge came from and when it was last seen."""
    from suture.graph_store import GraphStore

    if refresh:
        _run(_refresh_graph)
    stored = _with_store(lambda store: GraphStore(store.engine).graph())
    shown = stored.around(service) if service else stored
    if as_json:
        data = shown.model_dump(mode="json")
        if service:
            data["service"] = service
            data["dependents"] = stored.dependents(service)
        _print_json(data)
        return
    _graph_tree(shown, service)


async def _refresh_graph() -> None:
    from workers.graph_schedule import refresh_now

    settings = _settings()
    result = await refresh_now(await _client(settings), settings.task_queue)
    for problem in result.problems:
        errors.print(f"[yellow]warning:[/yellow] {escape(problem)}")


def _graph_tree(shown: Any, service: str | None) -> None:
    from rich.tree import Tree

    if not shown.edges:
        console.print("no edges known (is the graph refresh schedule running? try --refresh)")
        return
    tree = Tree(f"dependency graph{f' around {service}' if service else ''}")
    callers: dict[str, Any] = {}
    for edge in shown.edges:
        branch = callers.get(edge.source) or tree.add(f"[bold]{escape(edge.source)}[/bold] calls")
        callers[edge.source] = branch
        seen = edge.last_seen.isoformat(timespec="seconds")
        branch.add(f"{escape(edge.target)}  [dim]{', '.join(edge.sources)}; last seen {seen}[/dim]")
    console.print(tree)
    if service:
        console.print(f"dependents of {service}: {', '.join(shown.dependents(service)) or 'none'}")


@app.command()
def bench(
    name: Annotated[
        str, typer.Argument(help="latency, containment, burst, storm, open-runs, scale-out, sweep")
    ],
    count: Annotated[
        int | None,
        typer.Option(
            help="Signals to send (default: 200; storm and open-runs 5,000; sweep: workloads, 10,000)."
        ),
    ] = None,
    rate: Annotated[float | None, typer.Option(help="Signals per second (latency, containment).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes on the task queue (burst).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Measure suture on the bench stack (benchmarks, never timed tests)."""
    from workers.sandbox_commands import benchmarks

    known = _run(benchmarks)
    if name not in known:
        errors.print(f"[red]error:[/red] no benchmark {name!r}; known: {', '.join(known)}")
        raise typer.Exit(2)
    progress = None if as_json else errors.print
    figures = _run(lambda: known[name](count=count, rate=rate, workers=workers, progress=progress))
    # The one process that hosted the worker, the ingress and the sandbox (servers apart).
    figures["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if as_json:
        _print_json(figures)
    else:
        table = Table("figure", "value")
        for key, value in figures.items():
            table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
        console.print(table)


def _register_readiness() -> None:
    """``suture readiness`` and ``suture stage`` live in their own module; they use this one's helpers."""
    from workers import readiness_cli

    readiness_cli.register(app, sys.modules[__name__])


_register_readiness()


def _register_whatif() -> None:
    """``suture policy test`` and ``suture policy backtest`` live in :mod:`workers.whatif_cli`."""
    from workers import whatif_cli

    whatif_cli.register(policy_app, sys.modules[__name__])


_register_whatif()


def main() -> None:
    """The ``suture`` command: run it, then leave without tearing the interpreter down.

    The Temporal SDK's core runs its own threads, which call into Python to hand
    results back. When a short command such as ``suture approve`` returns, the
    interpreter finalizes while one of those threads may still be releasing the
    GIL, and the process aborts with ``Fatal Python error: PyGILState_Release``
    (about 1 exit in 30, whatever the command did). Every command has finished
    its work, stopped what it started and printed its output by the time ``app``
    returns, so suture flushes its streams and logs and exits at once with the
    command's status, leaving nothing for those threads to race.
    """
    code: int | str | None = 0
    try:
        app(prog_name="suture")
    except SystemExit as exit_:
        code = exit_.code
    if isinstance(code, str):
        sys.stderr.write(code + "\n")
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
