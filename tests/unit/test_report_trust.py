"""The report shows earned trust: the track record and shadow scores per policy, and demotions."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from suture.audit_chain import AuditKey
from suture.models import Mode, Outcome
from suture.report import build_report, render_html, render_text
from suture.store import AuditStore
from tests.unit.test_trust import NOW, POLICY, close


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    return AuditStore.create(f"sqlite:///{tmp_path / 'audit.db'}", key=AuditKey(b"k" * 32))


def test_the_report_shows_each_policys_track_record_shadow_score_and_demotion(store: AuditStore) -> None:
    close(store, "run-1", Outcome.RESOLVED, Mode.SUPERVISED)
    close(store, "run-2", Outcome.RESOLVED, Mode.SUPERVISED)
    close(store, "run-dry", Outcome.DRY_RUN, Mode.DRY_RUN, shadow=True)
    close(store, "run-failed", Outcome.ESCALATED, Mode.AUTONOMOUS, compensated=True)

    report = build_report(store, timedelta(days=1), now=NOW + timedelta(hours=1))

    [row] = report.trust
    assert (row.policy, row.action, row.supervised_successes, row.verify_failures) == (
        POLICY,
        "k8s.rollback",
        2,
        1,
    )
    assert (row.dry_runs, row.shadow_not_helpful, row.shadow_right_rate) == (1, 1, 0.0)
    assert row.mode.startswith("supervised (suture: an autonomous run (run-failed)")
    text = render_text(report, width=250)
    assert "earned trust" in text and POLICY in text
    page = render_html(report)
    assert "earned trust (track record, all time)" in page and "acting right" in page


def test_without_any_track_record_the_report_has_no_trust_table(store: AuditStore) -> None:
    report = build_report(store, timedelta(days=1), now=NOW)

    assert report.trust == [] and "earned trust" not in render_text(report)
