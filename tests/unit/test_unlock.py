"""Breaking a lock a terminated run left behind: audited, cooldown kept, never from an open run."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from suture.models import TargetClaim, TargetRelease
from suture.store import GOVERNANCE, AuditStore
from workers.cli import app

runner = CliRunner()


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'suture.db'}"
    monkeypatch.setenv("SUTURE_DB_URL", url)
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:9")  # nothing listens: Temporal is unreachable
    return url


def held(url: str, target: str = "shop/checkout", holder: str = "reliability-abc-1") -> AuditStore:
    store = AuditStore.create(url)
    assert store.claim_target(TargetClaim(target=target, workflow_id=holder, cooldown_s=0)).granted
    return store


def test_breaking_a_lock_frees_the_target_and_audits_who_did_it(store_url: str) -> None:
    store = held(store_url)
    assert store.break_lock("shop/checkout", "oncall-alice", "run was terminated") == "reliability-abc-1"
    assert store.lock_holder("shop/checkout") is None
    assert store.claim_target(
        TargetClaim(target="shop/checkout", workflow_id="reliability-def-2", cooldown_s=0)
    ).granted
    [event] = [e for e in store.events(GOVERNANCE) if e.step == "lock_broken"]
    assert (
        event.actor == "oncall-alice" and "reliability-abc-1" in event.detail and "terminated" in event.detail
    )
    assert store.verify_chain() is None


def test_breaking_a_lock_keeps_the_cooldown_of_the_last_action(store_url: str) -> None:
    store = held(store_url)
    store.release_target(TargetRelease(target="shop/checkout", workflow_id="reliability-abc-1", acted=True))
    assert store.claim_target(
        TargetClaim(target="shop/checkout", workflow_id="reliability-abc-2", cooldown_s=0)
    ).granted
    store.break_lock("shop/checkout", "oncall-alice")
    refused = store.claim_target(
        TargetClaim(target="shop/checkout", workflow_id="reliability-abc-3", cooldown_s=3600)
    )
    assert not refused.granted


def test_an_unlocked_target_has_nothing_to_break(store_url: str) -> None:
    store = AuditStore.create(store_url)
    assert store.break_lock("shop/checkout", "oncall-alice") is None
    assert [e for e in store.events(GOVERNANCE) if e.step == "lock_broken"] == []


def test_unlock_refuses_when_it_cannot_tell_the_holder_has_closed(store_url: str) -> None:
    store = held(store_url)
    result = runner.invoke(app, ["unlock", "shop/checkout", "--as", "oncall-alice"], terminal_width=200)
    assert result.exit_code == 2, result.output
    assert store.lock_holder("shop/checkout") == "reliability-abc-1", "nothing is lost on an error"


def test_unlock_with_force_takes_the_lock(store_url: str) -> None:
    store = held(store_url)
    result = runner.invoke(
        app, ["unlock", "shop/checkout", "--as", "oncall-alice", "--force"], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "taken from reliability-abc-1" in result.output
    assert store.lock_holder("shop/checkout") is None
