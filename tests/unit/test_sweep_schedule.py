"""The sweep's Temporal Schedule: interval from config, overlap skip, bounded catch-up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import ScheduleOverlapPolicy

from suture.errors import ConfigError
from workers.schedules import sweep_interval, sweep_schedule


def test_the_sweep_runs_hourly_unless_configured_otherwise() -> None:
    assert sweep_interval({}) == timedelta(hours=1)
    assert sweep_interval({"SUTURE_SWEEP_INTERVAL": "15m"}) == timedelta(minutes=15)


def test_a_sweep_interval_that_is_no_duration_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="SUTURE_SWEEP_INTERVAL"):
        sweep_interval({"SUTURE_SWEEP_INTERVAL": "hourly"})
    with pytest.raises(ConfigError, match="shorter than 1m"):
        sweep_interval({"SUTURE_SWEEP_INTERVAL": "5s"})


def test_an_overdue_sweep_is_skipped_while_one_runs_and_catch_up_is_bounded() -> None:
    schedule = sweep_schedule("suture", timedelta(hours=6))
    assert schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert schedule.policy.catchup_window == timedelta(hours=2)
    assert schedule.spec.intervals[0].every == timedelta(hours=6)
    assert schedule.action.workflow == "ResourceSweep"  # type: ignore[attr-defined]
