"""``suture policy test`` and ``suture policy backtest``: what a policy would decide, without acting.

``test`` reads one recorded input (an Alertmanager webhook payload, one of its
alerts, or an EventBridge event) and prints the decision of a policy file for it.
``backtest`` replays the inputs of every run that closed in a period (each run keeps
its input in its ``detected`` audit entry, see :mod:`suture.inputs`) twice: under the
configured policy set, and under the same set with the given file in place of the
file of the same name (as if it had been dropped into the policy folder). It prints,
per policy, how many decisions would bring more actions, fewer, or different ones.
Both are pure: nothing is started, nothing acts, nothing is written.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from policies.loading import check_policy_files, load_policy_file
from policies.models import Policy
from policies.trust import RECENT_CHANGE_S
from policies.whatif import Change, Stub, WhatIf, change_between, decide_input
from suture.errors import SutureError
from suture.inputs import RecordedInput, recorded_inputs
from suture.models import AlertNotice, AwsEvent
from suture.store import AuditStore
from workers.alertmanager import AlertmanagerAlert, AlertmanagerPayload
from workers.aws_events import EventBridgeEnvelope

ROLLOUT_SHORTLY_BEFORE_S = 60.0
"""The rollout age a backtest assumes for a run that saw a recent rollout."""


def read_inputs(path: Path) -> list[AlertNotice | AwsEvent]:
    """The alerts or the event recorded in ``path``, as the loops would receive them.

    Raises:
        SutureError: the file is not JSON, or not an Alertmanager payload, alert or EventBridge event.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SutureError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        document = json.loads(text)
    except ValueError as error:
        raise SutureError(f"{path}: not JSON ({error})") from None
    received = datetime.now(UTC)
    try:
        if isinstance(document, dict) and "alerts" in document:
            payload = AlertmanagerPayload.model_validate(document)
            return [alert.to_notice(received) for alert in payload.alerts]
        if isinstance(document, dict) and "detail-type" in document:
            return [EventBridgeEnvelope.model_validate(document).to_event(received)]
        if isinstance(document, dict) and "labels" in document:
            return [AlertmanagerAlert.model_validate(document).to_notice(received)]
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise SutureError(f"{path}: {where}: {first['msg']}") from None
    raise SutureError(
        f"{path}: neither an Alertmanager webhook payload (with 'alerts'), one alert (with 'labels') "
        "nor an EventBridge event (with 'detail-type')"
    )


def policy_test(policy_file: Path, input_file: Path, stub: Stub) -> list[WhatIf]:
    """What the policies of ``policy_file`` decide for each input recorded in ``input_file``."""
    policies = load_policy_file(policy_file)
    return [decide_input(policies, given, stub) for given in read_inputs(input_file)]


# --- backtest -------------------------------------------------------------------------------------


def changed_set(directories: list[Path], policy_file: Path) -> tuple[list[Policy], list[Policy]]:
    """The configured policy set, and the same set with ``policy_file`` in place of its namesake.

    Raises:
        InvalidPolicies: either set does not validate.
    """
    paths = [path for folder in directories for path in sorted(Path(folder).glob("*.y*ml"))]
    paths = [path for path in paths if path.name != "dependencies.yaml"]
    swapped = [policy_file if path.name == policy_file.name else path for path in paths]
    if policy_file.name not in {path.name for path in paths}:
        swapped.append(policy_file)
    current = [entry.policy for entry in check_policy_files(paths, raise_on_problems=True)[0]]
    changed = [entry.policy for entry in check_policy_files(swapped, raise_on_problems=True)[0]]
    return current, changed


def stub_for(recorded: RecordedInput) -> Stub:
    """What a replayed run is assumed to have read: the rollout its own assessment saw."""
    if recorded.change == "rollout":
        return Stub(rollout_age_s=ROLLOUT_SHORTLY_BEFORE_S)
    if recorded.change == "none":
        return Stub(rollout_age_s=2 * RECENT_CHANGE_S)
    return Stub()


def backtest(
    store: AuditStore, directories: list[Path], policy_file: Path, since: datetime
) -> dict[str, Any]:
    """Per policy, how the decisions on the period's recorded inputs change with ``policy_file``."""
    current, changed = changed_set(directories, policy_file)
    mine = {policy.name for policy in load_policy_file(policy_file)}
    per_policy: dict[str, Counter[str]] = {}
    changes, skipped = [], 0
    for recorded in recorded_inputs(store, since):
        if recorded.given is None:
            skipped += 1
            continue
        stub = stub_for(recorded)
        before = decide_input(current, recorded.given, stub)
        after = decide_input(changed, recorded.given, stub)
        change = change_between(before, after)
        name = after.policy or before.policy or "(no policy)"
        per_policy.setdefault(name, Counter())["runs"] += 1
        per_policy[name][str(change)] += 1
        if change != Change.SAME:
            changes.append(_change_row(recorded, change, before, after))
    return {
        "file": str(policy_file),
        "since": since.isoformat(timespec="seconds"),
        "policies_in_file": sorted(mine),
        "replayed": sum(counts["runs"] for counts in per_policy.values()),
        "skipped_without_input": skipped,
        "policies": [
            {"policy": name, "runs": counts["runs"], **{str(c): counts[str(c)] for c in Change}}
            for name, counts in sorted(per_policy.items())
        ],
        "changes": changes,
        "assumed": [
            "each run's input as it recorded it; the rollout history as its trust assessment saw it "
            f"(a recent rollout: {ROLLOUT_SHORTLY_BEFORE_S:.0f}s before the alert)",
            "credentials without a baseline of past calls; customer-managed policy documents unread",
            "decisions of the policies only: "
            "the trust gate, stages, kill switch, locks and cooldowns are not applied",
        ],
    }


def _change_row(recorded: RecordedInput, change: Change, before: WhatIf, after: WhatIf) -> dict[str, Any]:
    run = recorded.run
    return {
        "workflow_id": run.workflow_id,
        "loop": str(run.loop),
        "subject": run.subject,
        "happened": f"{run.outcome} under {run.policy or 'no policy'}",
        "change": str(change),
        "before": _brief(before),
        "after": _brief(after),
    }


def _brief(decision: WhatIf) -> str:
    what = ", ".join(decision.acts()) or "no action"
    mode = f" ({decision.mode})" if decision.mode else ""
    return f"{decision.policy or 'no policy'}: {decision.verdict}{mode}: {what}"


# --- the commands ----------------------------------------------------------------------------------


def register(policy_app: typer.Typer, cli: Any) -> None:
    """Add ``test`` and ``backtest`` to ``suture policy``; ``cli`` is :mod:`workers.cli`."""

    @policy_app.command("test")
    def policy_test_command(
        policy_file: Annotated[Path, typer.Argument(help="A policy YAML file.")],
        input_file: Annotated[
            Path, typer.Argument(help="An Alertmanager webhook payload or alert, or an EventBridge event.")
        ],
        rollout_age: Annotated[
            str | None,
            typer.Option(help="Assume the Deployment's current revision rolled out this long ago (5m)."),
        ] = None,
        familiar: Annotated[
            bool, typer.Option(help="Assume the credential's baseline holds this source, API and agent.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    ) -> None:
        """What a policy file would decide for one recorded alert or AWS event (nothing acts)."""
        from policies.durations import parse_duration

        def work() -> list[WhatIf]:
            age = parse_duration(rollout_age) if rollout_age is not None else None
            return policy_test(policy_file, input_file, Stub(rollout_age_s=age, familiar_credential=familiar))

        decisions = cli._run(work)
        if as_json:
            cli._print_json([decision.model_dump(mode="json") for decision in decisions])
            return
        for decision in decisions:
            _print_decision(cli, decision)

    @policy_app.command("backtest")
    def policy_backtest_command(
        policy_file: Annotated[Path, typer.Argument(help="The changed policy YAML file.")],
        since: Annotated[str, typer.Option(help="How far back: 90m, 24h, 30d or 1w.")] = "30d",
        as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    ) -> None:
        """Replay the period's recorded alerts and events against a changed policy file (nothing acts)."""
        from suture.report import parse_window

        window = cli._run(lambda: parse_window(since))
        start = datetime.now(UTC) - window
        folders = list(cli._settings().policy_dirs)
        found = cli._with_store(lambda store: backtest(store, folders, policy_file, start))
        if as_json:
            cli._print_json(found)
            return
        _print_backtest(cli, found)


def _print_decision(cli: Any, decision: WhatIf) -> None:
    cli.console.print(
        f"[bold]{decision.subject}[/bold] ({decision.loop}): policy {decision.policy or '-'} "
        f"decides [bold]{decision.verdict}[/bold]" + (f", {decision.mode}" if decision.mode else ""),
        highlight=False,
    )
    cli.console.print(f"  why: {decision.reason}", highlight=False)
    for action in decision.acts():
        cli.console.print(f"  would act: {action}", highlight=False)
    for line in decision.would_have_done if not decision.acts() else []:
        cli.console.print(f"  would have done: {line}", highlight=False)
    for line in decision.stubbed:
        cli.console.print(f"  assumed: {line}", highlight=False)
    cli.console.print("  not applied: trust gate, activation stage, kill switch, locks, cooldowns")


def _print_backtest(cli: Any, found: dict[str, Any]) -> None:
    cli.console.print(
        f"{found['replayed']} recorded inputs since {found['since']} replayed against {found['file']} "
        f"({found['skipped_without_input']} runs kept no input)",
        highlight=False,
    )
    table = Table("policy", "runs", *[str(change) for change in Change])
    for row in found["policies"]:
        table.add_row(row["policy"], str(row["runs"]), *[str(row[str(change)]) for change in Change])
    cli.console.print(table)
    for row in found["changes"]:
        cli.console.print(f"{row['workflow_id']} ({row['subject']}): {row['change']}", highlight=False)
        cli.console.print(f"  before: {row['before']}\n  after:  {row['after']}", highlight=False)
    for line in found["assumed"]:
        cli.console.print(f"assumed: {line}", highlight=False)
