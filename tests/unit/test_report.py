"""The morning report, computed from runs written to a real store."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from suture.models import ActionRecord, Loop, LoopResult, Mode, Outcome, Timeline
from suture.report import (
    BadWindow,
    LoopFigures,
    Report,
    build_report,
    figures_table,
    parse_window,
    render_html,
    render_json,
    render_text,
)
from suture.store import AuditStore

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def run(
    workflow_id: str,
    outcome: Outcome,
    repair_minutes: float,
    *,
    loop: Loop = Loop.RELIABILITY,
    closed_hours_ago: float = 2,
    approver: str | None = None,
    reason: str = "latency back under 0.5s",
    compensated: bool = False,
) -> LoopResult:
    closed = NOW - timedelta(hours=closed_hours_ago)
    detected = closed - timedelta(minutes=repair_minutes)
    return LoopResult(
        workflow_id=workflow_id,
        loop=loop,
        subject=f"shop/{workflow_id}",
        outcome=outcome,
        mode=Mode.SUPERVISED if approver else Mode.AUTONOMOUS,
        reason=reason,
        actions=[
            ActionRecord(
                type="k8s.rollback",
                target=f"shop/{workflow_id}",
                mode=Mode.AUTONOMOUS,
                compensated=compensated,
            )
        ],
        timeline=Timeline(detected=detected, verified=closed, closed=closed),
        human_touched=approver is not None,
        approver=approver,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuditStore]:
    opened = AuditStore.create(f"sqlite:///{tmp_path / 'suture.db'}")
    for closed in [
        run("checkout", Outcome.RESOLVED, 2),
        run("cart", Outcome.RESOLVED, 4),
        run("search", Outcome.RESOLVED, 12, approver="alice"),
        run(
            "payments",
            Outcome.ESCALATED,
            95,
            reason="verification failed; the action was undone",
            compensated=True,
        ),
        run("catalog", Outcome.SUPPRESSED, 0, reason="cooldown"),
        run("yesterday", Outcome.RESOLVED, 1, closed_hours_ago=30),
        run("key-ab12", Outcome.RESOLVED, 0.5, loop=Loop.SECURITY),
    ]:
        opened.close_run(closed)
    yield opened
    opened.close()


@pytest.fixture
def report(store: AuditStore) -> Report:
    return build_report(store, DAY, now=NOW)


def figures(report: Report, loop: Loop) -> LoopFigures:
    return next(item for item in report.loops if item.loop == loop)


def test_mttr_is_the_mean_and_median_of_resolved_runs_only(report: Report) -> None:
    reliability = figures(report, Loop.RELIABILITY)
    assert reliability.mttr_mean_s == pytest.approx(6 * 60)
    assert reliability.mttr_median_s == pytest.approx(4 * 60)


def test_escalations_are_counted_apart_and_never_in_mttr(report: Report) -> None:
    reliability = figures(report, Loop.RELIABILITY)
    assert (reliability.runs, reliability.resolved, reliability.escalated) == (5, 3, 1)
    assert reliability.outcomes[Outcome.SUPPRESSED] == 1
    assert [item.subject for item in report.escalated] == ["shop/payments"]
    assert report.escalated[0].reason == "verification failed; the action was undone"
    assert report.escalated[0].actions == ["k8s.rollback on shop/payments (undone)"]


def test_closure_rate_is_resolved_runs_over_every_closed_run(report: Report) -> None:
    assert figures(report, Loop.RELIABILITY).closure_rate == pytest.approx(3 / 5)


def test_auto_resolution_leaves_out_runs_a_human_approved(report: Report) -> None:
    reliability = figures(report, Loop.RELIABILITY)
    assert reliability.resolved_without_human == 2
    assert reliability.auto_resolution_rate == pytest.approx(2 / 5)


def test_each_loop_is_figured_separately(report: Report) -> None:
    security = figures(report, Loop.SECURITY)
    assert (security.runs, security.resolved, security.closure_rate) == (1, 1, 1.0)
    assert security.mttr_mean_s == pytest.approx(30)


def test_a_loop_without_runs_reports_no_rates_rather_than_zero(report: Report) -> None:
    resource = figures(report, Loop.RESOURCE)
    assert resource.runs == 0
    assert (resource.closure_rate, resource.auto_resolution_rate, resource.mttr_mean_s) == (None, None, None)


def test_runs_closed_before_the_window_are_left_out(store: AuditStore) -> None:
    last_day = build_report(store, DAY, now=NOW)
    last_two_days = build_report(store, 2 * DAY, now=NOW)
    assert "shop/yesterday" not in [fix.subject for fix in last_day.fixed]
    assert "shop/yesterday" in [fix.subject for fix in last_two_days.fixed]


def test_fixes_say_what_was_done_why_and_by_whom(report: Report) -> None:
    fixes = {fix.subject: fix for fix in report.fixed}
    assert fixes["shop/checkout"].actions == ["k8s.rollback on shop/checkout"]
    assert fixes["shop/checkout"].reason == "latency back under 0.5s"
    assert fixes["shop/checkout"].by == "suture"
    assert fixes["shop/search"].by == "alice"
    assert fixes["shop/search"].mttr_s == pytest.approx(12 * 60)


def test_the_json_report_reads_back_into_its_model(report: Report) -> None:
    document = json.loads(render_json(report))
    assert Report.model_validate(document) == report
    assert document["loops"][0]["closure_rate"] == pytest.approx(0.6)


def test_the_table_shows_rates_as_percentages_and_durations_readably(report: Report) -> None:
    rows = {row[0]: row for row in figures_table(report).rows}
    assert rows["reliability"][4:8] == ["60%", "40%", "6m 00s", "4m 00s"]
    assert rows["resource"][4:8] == ["-", "-", "-", "-"]


def test_the_text_report_lists_every_loop_and_every_fix(report: Report) -> None:
    text = render_text(report)
    for expected in ("reliability", "security", "resource", "shop/checkout", "alice", "shop/payments"):
        assert expected in text


def test_the_html_report_stands_alone_and_escapes_what_it_shows(store: AuditStore) -> None:
    store.close_run(run("frontend", Outcome.ESCALATED, 5, reason="<script>alert(1)</script> stayed high"))
    page = render_html(build_report(store, DAY, now=NOW))
    assert page.startswith("<!DOCTYPE html>")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; stayed high" in page
    assert "<script>alert(1)" not in page
    assert not re.search(r"<script[^>]*\bsrc=|<link\b", page), "nothing is loaded from elsewhere"
    assert "shop/checkout" in page and "<td>60%</td>" not in page  # 3 of 6 now: the escalation counts


def test_every_html_row_links_its_run_in_the_temporal_ui(store: AuditStore) -> None:
    store.close_run(run("frontend", Outcome.ESCALATED, 5, reason="stayed high"))
    report = build_report(store, DAY, now=NOW, ui_url="http://ui.example:8233", namespace="prod")
    page = render_html(report)
    rows = [*report.fixed, *report.escalated]
    assert rows
    for row in rows:
        url = f"http://ui.example:8233/namespaces/prod/workflows/{row.workflow_id}"
        assert row.url == url
        assert f'<a href="{url}"><code>{row.workflow_id}</code></a>' in page
    assert page.count("<h1>") == 1


def test_the_html_report_draws_closure_rate_and_mttr_per_loop(report: Report) -> None:
    page = render_html(report)
    assert 'id="suture-trend"' in page and "plotly.js" in page
    assert "reliability closure %" in page and "reliability MTTR s" in page
    points = [point for point in report.trend if point.loop == Loop.RELIABILITY]
    assert sum(point.runs for point in points) == 5
    assert sum(point.resolved for point in points) == 3


@pytest.mark.parametrize(("text", "seconds"), [("1w", 604800), ("7d", 604800), ("24h", 86400), ("90m", 5400)])
def test_the_window_reads_weeks_days_hours_and_minutes(text: str, seconds: float) -> None:
    assert parse_window(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["1y", "week", "", "-1d", "0h"])
def test_a_bad_window_says_how_to_write_one(text: str) -> None:
    with pytest.raises(BadWindow, match="write it like 90m, 24h, 7d or 1w"):
        parse_window(text)
