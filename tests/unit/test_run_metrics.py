"""The audit activities count what a Prometheus user expects, once per fact, and serve it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from activities.audit import AuditActivities
from suture.audit_chain import AuditKey
from suture.models import ActionRecord, AuditEntry, Loop, LoopResult, Mode, Outcome, Timeline
from suture.store import AuditStore
from workers.devserver import free_port
from workers.metrics import MetricsServer, embedded_metrics_port, metrics_port

START = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
KEY = AuditKey(b"k" * 32)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuditStore]:
    opened = AuditStore.create(f"sqlite:///{tmp_path / 'suture.db'}", key=KEY)
    yield opened
    opened.close()


@pytest.fixture
def audit(store: AuditStore) -> AuditActivities:
    return AuditActivities(store)


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    running = MetricsServer("127.0.0.1", free_port())
    running.start()
    yield running
    running.stop()


def scrape(server: MetricsServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(server.url).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(server: MetricsServer, name: str, **labels: str) -> float:
    return scrape(server).get((name, tuple(sorted(labels.items()))), 0.0)


def entry(workflow_id: str, seq: int, step: str) -> AuditEntry:
    return AuditEntry(
        workflow_id=workflow_id,
        seq=seq,
        loop=Loop.RELIABILITY,
        subject="shop/checkout",
        step=step,
        detail=step,
        at=START + timedelta(seconds=seq),
    )


def resolved(workflow_id: str, *, compensated: bool = False) -> LoopResult:
    action = ActionRecord(
        type="k8s.rollback",
        target="shop/checkout",
        mode=Mode.AUTONOMOUS,
        compensated=compensated,
        started_at=START + timedelta(seconds=4),
    )
    return LoopResult(
        workflow_id=workflow_id,
        loop=Loop.RELIABILITY,
        subject="shop/checkout",
        outcome=Outcome.ROLLED_BACK if compensated else Outcome.RESOLVED,
        reason="latency back under the objective",
        actions=[action],
        timeline=Timeline(
            detected=START, acted=START + timedelta(seconds=4), verified=START + timedelta(seconds=30)
        ),
    )


def test_a_run_is_counted_started_once_even_when_its_first_entry_is_recorded_twice(
    audit: AuditActivities, server: MetricsServer
) -> None:
    before = value(server, "suture_runs_started_total", loop="reliability")
    audit.record(entry("reliability-started-once", 1, "detected"))
    audit.record(entry("reliability-started-once", 1, "detected"))
    audit.record(entry("reliability-started-once", 2, "decided"))
    assert value(server, "suture_runs_started_total", loop="reliability") == before + 1


def test_a_closed_run_counts_its_outcome_actions_mttr_and_time_to_first_action_once(
    audit: AuditActivities, server: MetricsServer
) -> None:
    labels = {"loop": "reliability", "outcome": "resolved"}
    closed = value(server, "suture_runs_closed_total", **labels)
    applied = value(server, "suture_actions_total", type="k8s.rollback", result="applied")
    mttr = value(server, "suture_mttr_seconds_count", loop="reliability")
    first = value(server, "suture_time_to_first_action_seconds_sum", loop="reliability")
    audit.close_run(resolved("reliability-closed-once"))
    audit.close_run(resolved("reliability-closed-once"))
    assert value(server, "suture_runs_closed_total", **labels) == closed + 1
    assert value(server, "suture_actions_total", type="k8s.rollback", result="applied") == applied + 1
    assert value(server, "suture_mttr_seconds_count", loop="reliability") == mttr + 1
    assert value(server, "suture_time_to_first_action_seconds_sum", loop="reliability") == first + 4


def test_an_undone_action_counts_as_an_undo_and_adds_nothing_to_mttr(
    audit: AuditActivities, server: MetricsServer
) -> None:
    undos = value(server, "suture_undos_total", loop="reliability")
    mttr = value(server, "suture_mttr_seconds_count", loop="reliability")
    audit.close_run(resolved("reliability-undone", compensated=True))
    assert value(server, "suture_undos_total", loop="reliability") == undos + 1
    assert value(server, "suture_actions_total", type="k8s.rollback", result="undone") >= 1
    assert value(server, "suture_mttr_seconds_count", loop="reliability") == mttr


def test_a_run_waiting_for_approval_is_counted_until_it_moves_on(
    audit: AuditActivities, server: MetricsServer
) -> None:
    before = value(server, "suture_runs_awaiting_approval")
    audit.record(entry("reliability-waiting", 1, "awaiting_approval"))
    assert value(server, "suture_runs_awaiting_approval") == before + 1
    audit.record(entry("reliability-waiting", 2, "approval_ignored"))
    assert value(server, "suture_runs_awaiting_approval") == before + 1
    audit.record(entry("reliability-waiting", 3, "approved"))
    assert value(server, "suture_runs_awaiting_approval") == before


def test_kill_switches_and_the_chain_head_are_read_from_the_store_at_scrape_time(
    audit: AuditActivities, store: AuditStore, server: MetricsServer
) -> None:
    store.pause("security", by="alice", reason="incident review")
    assert value(server, "suture_kill_switch_paused", scope="security") == 1
    assert value(server, "suture_kill_switch_paused", scope="all") == 0
    head = value(server, "suture_audit_chain_head_seq")
    audit.record(entry("reliability-chain", 1, "detected"))
    assert value(server, "suture_audit_chain_head_seq") == head + 1
    store.resume("security", by="alice")
    assert value(server, "suture_kill_switch_paused", scope="security") == 0


def test_the_metrics_port_comes_from_the_environment_and_defaults_to_9464() -> None:
    assert metrics_port({}) == 9464
    assert metrics_port({"SUTURE_METRICS_PORT": "9500"}) == 9500
    assert metrics_port({"SUTURE_METRICS_PORT": "0"}) == 0
    with pytest.raises(Exception, match="SUTURE_METRICS_PORT"):
        metrics_port({"SUTURE_METRICS_PORT": "metrics"})


def test_suture_up_moves_to_a_free_metrics_port_when_9464_is_taken_and_none_was_asked_for() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("workers.metrics.DEFAULT_PORT", busy)
            assert embedded_metrics_port({}) not in (busy, 0)
            assert embedded_metrics_port({"SUTURE_METRICS_PORT": str(busy)}) == busy
