"""How a storm's payload is cut for the alert intake: runs kept whole, in order, within the limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from suture.identity import reliability_workflow_id
from suture.intake import CHUNK_BYTES, IntakeReport, by_run, pack
from suture.models import AlertNotice

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def notice(fingerprint: str, status: str = "firing", summary: str = "", minute: int = 0) -> AlertNotice:
    return AlertNotice(
        fingerprint=fingerprint,
        status=status,
        labels={"alertname": "Storm", "service": fingerprint},
        annotations={"summary": summary} if summary else {},
        starts_at=NOW - timedelta(minutes=minute),
        received_at=NOW,
    )


def test_alerts_of_one_run_stay_together_in_payload_order() -> None:
    alerts = [notice("a"), notice("b"), notice("a", "resolved"), notice("c"), notice("b", "resolved")]

    groups = by_run(alerts)

    assert [[(n.fingerprint, n.status) for n in group] for group in groups] == [
        [("a", "firing"), ("a", "resolved")],
        [("b", "firing"), ("b", "resolved")],
        [("c", "firing")],
    ]


def test_a_storm_is_cut_into_pieces_of_at_most_the_chunk_size_covering_every_alert_once() -> None:
    alerts = [notice(f"svc-{index:04d}") for index in range(5000)]

    pieces = pack(alerts, 500, CHUNK_BYTES)

    assert len(pieces) == 10 and all(len(piece) <= 500 for piece in pieces)
    assert [n.fingerprint for piece in pieces for n in piece] == [n.fingerprint for n in alerts]


def test_no_run_is_split_between_two_pieces() -> None:
    alerts = [notice(f"svc-{index % 7}", minute=0) for index in range(30)]

    pieces = pack(alerts, 4)

    runs_per_piece = [{reliability_workflow_id(n) for n in piece} for piece in pieces]
    assert sum(len(runs) for runs in runs_per_piece) == 7  # each run in exactly one piece


def test_a_piece_stays_under_its_byte_limit_when_alerts_are_large() -> None:
    alerts = [notice(f"svc-{index}", summary="x" * 30_000) for index in range(100)]

    pieces = pack(alerts, 500, 256 * 1024)

    assert len(pieces) > 1
    assert all(sum(len(n.model_dump_json()) for n in piece) <= 256 * 1024 for piece in pieces)


def test_intake_reports_add_up_their_kinds() -> None:
    first = IntakeReport(kinds={"started": 90, "joined": 10})
    second = IntakeReport(kinds={"started": 5}, failures=["x"])

    merged = IntakeReport.merged([first, second])

    assert merged.kinds == {"started": 95, "joined": 10} and merged.failures == ["x"]
