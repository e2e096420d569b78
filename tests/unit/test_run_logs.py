"""One log line per run event, as text or as JSON; expected failures read as one line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from activities.audit import AuditActivities
from suture.audit_chain import AuditKey
from suture.errors import TargetNotFound
from suture.logs import RUN_EVENTS, configure_logging
from suture.models import Loop, LoopResult, Outcome, Timeline
from suture.store import AuditStore
from tests.unit.test_run_metrics import START, entry
from workers.cli import app

KEY = AuditKey(b"l" * 32)


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[AuditActivities]:
    store = AuditStore.create(f"sqlite:///{tmp_path / 'suture.db'}", key=KEY)
    yield AuditActivities(store)
    store.close()


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Logging configured as ``SUTURE_LOG_FORMAT=json`` would, into a buffer."""
    buffer = io.StringIO()
    configure_logging("json", stream=buffer, force=True)
    level = RUN_EVENTS.level
    RUN_EVENTS.setLevel(logging.INFO)
    yield buffer
    RUN_EVENTS.setLevel(level)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "suture", False)]:
        root.removeHandler(handler)


def closed(workflow_id: str) -> LoopResult:
    return LoopResult(
        workflow_id=workflow_id,
        loop=Loop.RELIABILITY,
        subject="shop/checkout",
        outcome=Outcome.ESCALATED,
        reason="no policy knows this alert",
        timeline=Timeline(detected=START, closed=START),
    )


def test_each_run_event_is_one_line_naming_the_run_loop_target_and_outcome(
    audit: AuditActivities, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="suture.runs")
    audit.record(entry("reliability-logged", 1, "detected"))
    audit.record(entry("reliability-logged", 2, "decided"))
    audit.record(entry("reliability-logged", 2, "decided"))
    audit.close_run(closed("reliability-logged"))
    events = [(r.event, r.outcome) for r in caplog.records if r.name == "suture.runs"]  # type: ignore[attr-defined]
    assert events == [
        ("started", "started"),
        ("detected", "detected"),
        ("decided", "decided"),
        ("closed", "escalated"),
    ]
    last = caplog.records[-1].getMessage()
    assert "reliability-logged" in last and "shop/checkout" in last and "escalated" in last
    assert all("\n" not in record.getMessage() for record in caplog.records)


def test_with_the_json_format_every_run_event_is_a_json_object_with_its_fields(
    audit: AuditActivities, json_lines: io.StringIO
) -> None:
    audit.record(entry("reliability-json", 1, "detected"))
    audit.close_run(closed("reliability-json"))
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["started", "detected", "closed"]
    assert lines[-1] | {"time": None} == {
        "time": None,
        "level": "info",
        "logger": "suture.runs",
        "message": lines[-1]["message"],
        "event": "closed",
        "run_id": "reliability-json",
        "loop": "reliability",
        "target": "shop/checkout",
        "outcome": "escalated",
    }


def test_a_missing_deployment_is_logged_as_one_line_without_a_traceback(json_lines: io.StringIO) -> None:
    try:
        raise TargetNotFound.failure("Deployment shop/gone not found: check the namespace and name")
    except Exception:
        logging.getLogger("temporalio.activity").warning("Completing activity as failed", exc_info=True)
    (line,) = [json.loads(text) for text in json_lines.getvalue().splitlines()]
    assert line["message"] == (
        "Completing activity as failed: TargetNotFound: "
        "Deployment shop/gone not found: check the namespace and name"
    )
    assert "exception" not in line


def test_an_unexpected_error_keeps_its_traceback(json_lines: io.StringIO) -> None:
    try:
        raise KeyError("bug")
    except KeyError:
        logging.getLogger("temporalio.activity").warning("Completing activity as failed", exc_info=True)
    (line,) = [json.loads(text) for text in json_lines.getvalue().splitlines()]
    assert "Traceback" in line["exception"]


def test_an_unknown_log_format_stops_the_command_with_one_line() -> None:
    result = CliRunner().invoke(app, ["permissions", "--iam"], env={"SUTURE_LOG_FORMAT": "xml"})
    assert result.exit_code == 2
    assert "SUTURE_LOG_FORMAT must be one of text, json" in result.output
