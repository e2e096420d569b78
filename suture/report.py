"""The morning report: what suture fixed, why, by whom, and how well each loop closes.

Three figures per loop, computed from the ``runs`` table over a window:

* closure rate: resolved runs / every run closed in the window, whatever its outcome;
* auto-resolution rate: runs resolved with no human touching them / every run;
* MTTR: mean and median of detected → verified over *resolved* runs only.
* where the time goes: medians of detected → decided → acted → verified per loop,
  so the decision-to-action gap can be watched shrinking;
* verification lag per policy: how long after an action its verify signal first
  showed the change (median and p90), against the policy's propagation window.
  Escalations are failures of the loop, not slow successes; folding them in would
  make the figure describe the on-call engineer instead of the loop, so they are
  counted and listed apart.

The computation (:func:`summarize`) is a pure function of the runs; rendering turns
the :class:`Report` model into Rich tables, plain text, JSON or a standalone HTML
page that can be mailed or archived. Every row names its run and links to it in
the Temporal UI. The page draws closure rate and MTTR per loop over time with
plotly (its JavaScript inlined, so the file opens anywhere without a network).
"""

from __future__ import annotations

import html
import io
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, computed_field

from suture.errors import SutureError
from suture.models import ActionRecord, AuditEntry, Loop, LoopResult, Outcome
from suture.stages import PROPAGATION

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from policies.trust import TrackRecord
    from suture.store import AuditStore

SUTURE = "suture"
"""Who fixed a run that no human touched."""
DEFAULT_UI_URL = "http://127.0.0.1:8233"
"""The Temporal UI of ``suture up``; ``TEMPORAL_UI_URL`` points elsewhere."""
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|h|d|w)\s*$")
_WINDOW_UNITS = {"m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


class BadWindow(SutureError):
    """A ``--since`` that is not a duration."""


def parse_window(text: str) -> timedelta:
    """``--since`` as a duration: ``90m``, ``24h``, ``7d`` or ``1w``.

    Raises:
        BadWindow: naming the value and how to write one.
    """
    found = _WINDOW.match(text)
    if not found or float(found.group(1)) <= 0:
        raise BadWindow(f"--since {text!r} is not a window; write it like 90m, 24h, 7d or 1w")
    return timedelta(seconds=float(found.group(1)) * _WINDOW_UNITS[found.group(2)])


def run_url(ui_url: str, namespace: str, workflow_id: str) -> str:
    """Where the Temporal UI shows a run."""
    from urllib.parse import quote

    return (
        f"{ui_url.rstrip('/')}/namespaces/{quote(namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"
    )


class ReportModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoopFigures(ReportModel):
    """One loop's runs over the window. Rates and MTTR are None when there is nothing to divide."""

    loop: Loop
    runs: int
    outcomes: dict[Outcome, int]
    resolved: int
    escalated: int
    resolved_without_human: int
    closure_rate: float | None
    auto_resolution_rate: float | None
    mttr_mean_s: float | None
    mttr_median_s: float | None
    decide_median_s: float | None = None
    """Median seconds from detection to the decision."""
    act_median_s: float | None = None
    """Median seconds from the decision to the first action (approval waits included)."""
    verify_median_s: float | None = None
    """Median seconds from the first action to the verdict (the propagation window included)."""


class Propagation(ReportModel):
    """How long one policy's actions took to show in its verify signal, against its window."""

    policy: str
    runs: int
    median_s: float
    p90_s: float
    window_s: float | None = None
    """The policy's propagation window as configured now; None when the policy is not loaded."""

    @property
    def window_too_short(self) -> bool:
        return self.window_s is not None and self.p90_s > self.window_s


class Fix(ReportModel):
    """A resolved run: what was done, why, by whom, how fast."""

    workflow_id: str
    url: str = ""
    loop: Loop
    subject: str
    actions: list[str]
    reason: str
    by: str
    policy: str | None
    policy_version: str | None
    detected: datetime | None
    verified: datetime | None
    mttr_s: float | None


class HandOver(ReportModel):
    """An escalated run: a human took over, and why."""

    workflow_id: str
    url: str = ""
    loop: Loop
    subject: str
    reason: str
    actions: list[str]
    closed: datetime | None


class TrendPoint(ReportModel):
    """One loop over one bucket of the window (an hour, or a day for windows over two days)."""

    loop: Loop
    start: datetime
    runs: int
    resolved: int
    closure_rate: float | None
    mttr_mean_s: float | None


class TrustRow(ReportModel):
    """One action class of one policy: its track record (all time) and shadow scores."""

    policy: str
    action: str
    mode: str
    """The mode it runs at now: the policy's own, or a promotion or demotion (who and why)."""
    signatures: int
    successes: int
    supervised_successes: int
    undos: int
    rejections: int
    verify_failures: int
    dry_runs: int
    shadow_right: int
    shadow_not_helpful: int
    shadow_undecided: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def shadow_right_rate(self) -> float | None:
        """How often acting would have been right, of the dry runs watched to the end."""
        scored = self.shadow_right + self.shadow_not_helpful + self.shadow_undecided
        return self.shadow_right / scored if scored else None


class Report(ReportModel):
    since: datetime
    until: datetime
    loops: list[LoopFigures]
    fixed: list[Fix]
    escalated: list[HandOver]
    trend: list[TrendPoint] = []
    saved_usd_month: float = 0.0
    """What the resource loop's verified, not undone, actions save per month at list price."""
    resource_dry_runs: int = 0
    """Resource candidates only recorded as dry-run (policy mode, daily cap or tag coverage)."""
    propagation: list[Propagation] = []
    trust: list[TrustRow] = []
    """Earned trust per policy and action class; kept over all time, not the window."""


def build_report(
    store: AuditStore,
    window: timedelta,
    now: datetime | None = None,
    *,
    ui_url: str = DEFAULT_UI_URL,
    namespace: str = "default",
    windows: Mapping[str, float] | None = None,
) -> Report:
    """The report over the ``window`` that ends ``now``, read from ``store``.

    ``windows`` maps policy names to their propagation windows (seconds), for the
    verification lag table.
    """
    until = now or datetime.now(UTC)
    since = until - window
    report = summarize(store.runs(since=since, until=until), since, until, ui_url=ui_url, namespace=namespace)
    report.propagation = verification_lags(store, since, until, windows or {})
    report.trust = trust_rows(store)
    return report


def trust_rows(store: AuditStore) -> list[TrustRow]:
    """The track record and shadow scores per (policy, action), with any promotion or demotion."""
    from suture import trust_store

    overrides = {(o.policy, o.action): o for o in trust_store.overrides(store)}
    grouped: dict[tuple[str, str], list[TrackRecord]] = {}
    for record in trust_store.track_records(store):
        grouped.setdefault((record.policy, record.action), []).append(record)
    rows = []
    for (policy, action), records in sorted(grouped.items()):
        override = overrides.get((policy, action))
        mode = f"{override.mode} ({override.by}: {override.reason})" if override else "as the policy says"
        rows.append(
            TrustRow(
                policy=policy,
                action=action,
                mode=mode,
                signatures=len(records),
                **{field: sum(getattr(r, field) for r in records) for field in _COUNTED},
            )
        )
    return rows


_COUNTED = (
    "successes",
    "supervised_successes",
    "undos",
    "rejections",
    "verify_failures",
    "dry_runs",
    "shadow_right",
    "shadow_not_helpful",
    "shadow_undecided",
)


def verification_lags(
    store: AuditStore, since: datetime, until: datetime, windows: Mapping[str, float]
) -> list[Propagation]:
    """Per policy, the verification lags recorded by the runs that closed in the window."""
    runs = store.runs(since=since, until=until)
    return propagation(runs, store.events_at("verified", since=since), windows)


def propagation(
    runs: Sequence[LoopResult], verified: Sequence[AuditEntry], windows: Mapping[str, float]
) -> list[Propagation]:
    """Per policy, the verification lags in the runs' ``verified`` audit entries."""
    policy_of = {run.workflow_id: run.policy for run in runs if run.policy}
    lags: dict[str, list[float]] = {}
    for entry in verified:
        policy = policy_of.get(entry.workflow_id)
        for item in entry.evidence:
            if policy and item.source == PROPAGATION and isinstance(item.value, int | float):
                lags.setdefault(policy, []).append(float(item.value))
    return [
        Propagation(
            policy=policy,
            runs=len(found),
            median_s=statistics.median(found),
            p90_s=_p90(found),
            window_s=windows.get(policy),
        )
        for policy, found in sorted(lags.items())
    ]


def _p90(values: list[float]) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def summarize(
    runs: Sequence[LoopResult],
    since: datetime,
    until: datetime,
    *,
    ui_url: str = DEFAULT_UI_URL,
    namespace: str = "default",
) -> Report:
    """Compute the report from the runs that closed in ``[since, until)``."""
    report = Report(
        since=since,
        until=until,
        loops=[_figures(loop, [run for run in runs if run.loop == loop]) for loop in Loop],
        fixed=[_fix(run) for run in runs if run.outcome == Outcome.RESOLVED],
        escalated=[_hand_over(run) for run in runs if run.outcome == Outcome.ESCALATED],
        trend=_trend(runs, since, until),
        saved_usd_month=round(
            sum(
                action.savings_usd_month or 0.0
                for run in runs
                if run.outcome == Outcome.RESOLVED
                for action in run.actions
                if not action.compensated
            ),
            2,
        ),
        resource_dry_runs=sum(run.loop == Loop.RESOURCE and run.outcome == Outcome.DRY_RUN for run in runs),
    )
    rows: list[Fix | HandOver] = [*report.fixed, *report.escalated]
    for row in rows:
        row.url = run_url(ui_url, namespace, row.workflow_id)
    return report


def _trend(runs: Sequence[LoopResult], since: datetime, until: datetime) -> list[TrendPoint]:
    """Per loop and bucket, the closure rate and MTTR of the runs that closed in it."""
    step = timedelta(days=1) if until - since > timedelta(days=2) else timedelta(hours=1)
    points = []
    for loop in Loop:
        mine = [run for run in runs if run.loop == loop and run.timeline.closed is not None]
        if not mine:
            continue
        start = since
        while start < until:
            bucket = [run for run in mine if start <= run.timeline.closed < start + step]  # type: ignore[operator]
            if bucket:
                figures = _figures(loop, bucket)
                points.append(
                    TrendPoint(
                        loop=loop,
                        start=start,
                        runs=figures.runs,
                        resolved=figures.resolved,
                        closure_rate=figures.closure_rate,
                        mttr_mean_s=figures.mttr_mean_s,
                    )
                )
            start += step
    return points


def repair_time(run: LoopResult) -> float | None:
    """Seconds from detection to verified resolution; None for runs that did not resolve."""
    detected, verified = run.timeline.detected, run.timeline.verified
    if run.outcome != Outcome.RESOLVED or detected is None or verified is None:
        return None
    return (verified - detected).total_seconds()


def _figures(loop: Loop, runs: list[LoopResult]) -> LoopFigures:
    outcomes = {outcome: sum(run.outcome == outcome for run in runs) for outcome in Outcome}
    resolved = outcomes[Outcome.RESOLVED]
    unattended = sum(run.outcome == Outcome.RESOLVED and not run.human_touched for run in runs)
    times = [seconds for seconds in map(repair_time, runs) if seconds is not None]
    return LoopFigures(
        loop=loop,
        runs=len(runs),
        outcomes=outcomes,
        resolved=resolved,
        escalated=outcomes[Outcome.ESCALATED],
        resolved_without_human=unattended,
        closure_rate=resolved / len(runs) if runs else None,
        auto_resolution_rate=unattended / len(runs) if runs else None,
        mttr_mean_s=statistics.fmean(times) if times else None,
        mttr_median_s=statistics.median(times) if times else None,
        decide_median_s=_median_between(runs, "detected", "decided"),
        act_median_s=_median_between(runs, "decided", "acted"),
        verify_median_s=_median_between(runs, "acted", "verified"),
    )


def _median_between(runs: Sequence[LoopResult], start: str, end: str) -> float | None:
    spans = [
        (getattr(run.timeline, end) - getattr(run.timeline, start)).total_seconds()
        for run in runs
        if getattr(run.timeline, start) is not None and getattr(run.timeline, end) is not None
    ]
    return statistics.median(spans) if spans else None


def _fix(run: LoopResult) -> Fix:
    return Fix(
        workflow_id=run.workflow_id,
        loop=run.loop,
        subject=run.subject,
        actions=[_action_text(action) for action in run.actions],
        reason=run.reason,
        by=run.approver if run.human_touched and run.approver else SUTURE,
        policy=run.policy,
        policy_version=run.policy_version,
        detected=run.timeline.detected,
        verified=run.timeline.verified,
        mttr_s=repair_time(run),
    )


def _hand_over(run: LoopResult) -> HandOver:
    return HandOver(
        workflow_id=run.workflow_id,
        loop=run.loop,
        subject=run.subject,
        reason=run.reason,
        actions=[_action_text(action) for action in run.actions],
        closed=run.timeline.closed,
    )


def _action_text(action: ActionRecord) -> str:
    undone = " (undone)" if action.compensated else ""
    return f"{action.type} on {action.target}{undone}"


# --- rendering ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TableData:
    """A table as plain strings: easy to print with Rich, to test, or to turn into HTML."""

    title: str
    columns: list[str]
    rows: list[list[str]]

    def to_rich(self) -> Table:
        from rich.table import Table

        table = Table(*self.columns, title=self.title, title_justify="left")
        for row in self.rows:
            table.add_row(*row)
        return table


def tables(report: Report) -> list[TableData]:
    """The report as four tables: figures per loop, fixes, escalations, money."""
    found = [
        figures_table(report),
        time_table(report),
        fixes_table(report),
        escalations_table(report),
        money_table(report),
        propagation_table(report),
    ]
    return found + ([trust_table(report)] if report.trust else [])


def trust_table(report: Report) -> TableData:
    """Per policy and action class: the track record, the shadow score, the mode it runs at now."""
    rows = [
        [
            row.policy,
            row.action,
            str(row.successes),
            str(row.supervised_successes),
            f"{row.undos} / {row.rejections} / {row.verify_failures}",
            str(row.dry_runs),
            f"{row.shadow_right} / {row.shadow_not_helpful} / {row.shadow_undecided}",
            _rate(row.shadow_right_rate),
            row.mode,
        ]
        for row in report.trust
    ]
    columns = [
        "policy",
        "action",
        "verified",
        "of them supervised",
        "undone / rejected / failed",
        "dry runs",
        "shadow right / not helpful / undecided",
        "acting right",
        "mode now",
    ]
    return TableData("earned trust (track record, all time)", columns, rows)


def time_table(report: Report) -> TableData:
    """Where each loop's time goes: detection → decision → action → verified (medians)."""
    rows = [
        [
            figures.loop.value,
            _duration(figures.decide_median_s),
            _duration(figures.act_median_s),
            _duration(figures.verify_median_s),
        ]
        for figures in report.loops
    ]
    columns = ["loop", "detected → decided", "decided → acted", "acted → verified"]
    return TableData("where the time goes (medians)", columns, rows)


def propagation_table(report: Report) -> TableData:
    """Verification lag per policy, flagged where the p90 is longer than the window."""
    rows = [
        [
            item.policy,
            str(item.runs),
            _duration(item.median_s),
            _duration(item.p90_s),
            _duration(item.window_s),
            "window too short" if item.window_too_short else "ok",
        ]
        for item in report.propagation
    ]
    columns = ["policy", "verified", "median lag", "p90 lag", "window", ""]
    return TableData("verification lag (action → signal shows it)", columns, rows)


def money_table(report: Report) -> TableData:
    """The resource loop's money: saved per month, and how many candidates stayed dry-run."""
    rows = [[f"${report.saved_usd_month:,.2f}", str(report.resource_dry_runs)]]
    return TableData("money (resource loop, list price)", ["saved per month", "dry-run candidates"], rows)


def figures_table(report: Report) -> TableData:
    rows = [
        [
            figures.loop.value,
            str(figures.runs),
            str(figures.resolved),
            str(figures.escalated),
            _rate(figures.closure_rate),
            _rate(figures.auto_resolution_rate),
            _duration(figures.mttr_mean_s),
            _duration(figures.mttr_median_s),
        ]
        for figures in report.loops
    ]
    columns = [
        "loop",
        "runs",
        "resolved",
        "escalated",
        "closure",
        "auto-resolved",
        "MTTR mean",
        "MTTR median",
    ]
    return TableData("per loop", columns, rows)


def fixes_table(report: Report) -> TableData:
    rows = [
        [
            fix.subject,
            "; ".join(fix.actions) or "-",
            fix.reason,
            fix.by,
            _duration(fix.mttr_s),
            fix.workflow_id,
        ]
        for fix in report.fixed
    ]
    return TableData("fixed", ["what", "action", "why", "by", "MTTR", "run"], rows)


def escalations_table(report: Report) -> TableData:
    rows = [
        [
            item.subject,
            item.loop.value,
            item.reason,
            "; ".join(item.actions) or "-",
            _time(item.closed),
            item.workflow_id,
        ]
        for item in report.escalated
    ]
    return TableData("handed to a human", ["what", "loop", "why", "actions", "closed", "run"], rows)


def render_table(report: Report, console: Console) -> None:
    """Print the report's tables on a Rich console."""
    for table in tables(report):
        console.print(table.to_rich())


def render_text(report: Report, width: int = 120) -> str:
    """The report as plain text, the same tables without colour."""
    from rich.console import Console

    buffer = io.StringIO()
    render_table(report, Console(file=buffer, width=width, color_system=None, force_terminal=False))
    return buffer.getvalue()


def render_json(report: Report) -> str:
    return report.model_dump_json(indent=2)


def render_html(report: Report) -> str:
    """A standalone HTML page: the charts, then the tables with every run linked to the Temporal UI."""
    rows: list[Fix | HandOver] = [*report.fixed, *report.escalated]
    links = {row.workflow_id: row.url for row in rows if row.url}
    sections = "\n".join(_html_table(table, links) for table in tables(report))
    title = html.escape(f"suture report, {_window(report)}")
    return _PAGE.format(title=title, charts=trend_charts(report), sections=sections)


def trend_charts(report: Report) -> str:
    """Closure rate and MTTR per loop over the window, as one plotly figure (JavaScript inlined)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(
        rows=2, cols=1, shared_xaxes=True, subplot_titles=("closure rate", "MTTR (resolved runs, seconds)")
    )
    for loop in Loop:
        points = [point for point in report.trend if point.loop == loop]
        if not points:
            continue
        starts = [point.start for point in points]
        rates = [None if p.closure_rate is None else round(p.closure_rate * 100, 1) for p in points]
        figure.add_trace(
            go.Scatter(x=starts, y=rates, name=f"{loop.value} closure %", mode="lines+markers"), 1, 1
        )
        mttr = [p.mttr_mean_s for p in points]
        figure.add_trace(
            go.Scatter(x=starts, y=mttr, name=f"{loop.value} MTTR s", mode="lines+markers"), 2, 1
        )
    figure.update_yaxes(range=[0, 105], ticksuffix="%", row=1, col=1)
    figure.update_xaxes(range=[report.since, report.until])
    figure.update_layout(height=560, margin={"t": 40, "l": 60, "r": 20, "b": 40}, template="plotly_white")
    return str(figure.to_html(full_html=False, include_plotlyjs=True, div_id="suture-trend"))


def _html_table(table: TableData, links: dict[str, str]) -> str:
    head = "".join(f"<th>{html.escape(column)}</th>" for column in table.columns)
    if table.rows:
        body = "\n".join(
            "<tr>" + "".join(f"<td>{_cell(cell, links)}</td>" for cell in row) + "</tr>" for row in table.rows
        )
    else:
        body = f'<tr><td colspan="{len(table.columns)}" class="none">none</td></tr>'
    return (
        f"<section><h2>{html.escape(table.title)}</h2>\n"
        f"<table><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></section>"
    )


def _cell(cell: str, links: dict[str, str]) -> str:
    if cell in links:
        return f'<a href="{html.escape(links[cell])}"><code>{html.escape(cell)}</code></a>'
    return html.escape(cell)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1d1d1f; }}
h1 {{ font-size: 1.4rem; }}
h2 {{ font-size: 1.1rem; margin-top: 2rem; }}
table {{ border-collapse: collapse; min-width: 40rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.35rem 0.75rem; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f6; }}
td.none {{ color: #888; font-style: italic; }}
</style>
</head>
<body>
<h1>{title}</h1>
<section><h2>over time</h2>
{charts}
</section>
{sections}
</body>
</html>
"""


def _window(report: Report) -> str:
    return f"{_time(report.since)} to {_time(report.until)}"


def _time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"
