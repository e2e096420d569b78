"""The command line a user meets first: help, listing, and errors that say what to fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suture.models import Loop
from suture.store import AuditStore
from workers.cli import app

runner = CliRunner()
COMMANDS = [
    ["up"],
    ["worker"],
    ["ingress"],
    ["demo"],
    ["drill"],
    ["pending"],
    ["approve"],
    ["reject"],
    ["undo"],
    ["unlock"],
    ["pause"],
    ["resume"],
    ["report"],
    ["bench"],
    ["policy", "check"],
    ["audit", "verify"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_explains_itself_with_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_the_drill_list_names_every_reliability_drill() -> None:
    result = runner.invoke(app, ["drill", "--list"], terminal_width=200)
    assert result.exit_code == 0
    for name in (
        "bad-deploy-latency",
        "memory-leak-restart",
        "rollback-does-not-help",
        "novel-alert",
        "approval-timeout",
        "stale-metrics",
    ):
        assert name in result.output


def test_an_unknown_drill_is_refused_with_the_known_ones() -> None:
    result = runner.invoke(app, ["drill", "no-such-drill"])
    assert result.exit_code == 2
    assert "bad-deploy-latency" in result.output


def test_a_policy_typo_is_reported_with_file_and_line(tmp_path: Path) -> None:
    policy = tmp_path / "typo.yaml"
    policy.write_text(
        "policies:\n  - name: x\n    match: {alertname: A}\n    mode: autonomous\n    actoins: []\n"
    )
    result = runner.invoke(app, ["policy", "check", str(policy)], terminal_width=200)
    assert result.exit_code == 2
    assert f"{policy}:5" in result.output and "unknown key 'actoins'" in result.output


def test_a_valid_policy_file_prints_each_policy_with_its_pinned_version() -> None:
    shipped = Path(__file__).parents[2] / "sandbox" / "policies" / "reliability.yaml"
    result = runner.invoke(app, ["policy", "check", str(shipped)], terminal_width=200)
    assert result.exit_code == 0
    assert "sandbox-latency-after-rollout (reliability, autonomous) version" in result.output


def test_a_missing_policy_file_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    result = runner.invoke(app, ["policy", "check", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_a_wrong_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "not an address")
    result = runner.invoke(app, ["pending"], terminal_width=200)
    assert result.exit_code == 2
    assert "TEMPORAL_ADDRESS" in result.output


# --- kill switch ---------------------------------------------------------------------------


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'suture.db'}"
    monkeypatch.setenv("SUTURE_DB_URL", url)
    return url


def switch_of(url: str, loop: Loop) -> tuple[bool, str, str, str]:
    store = AuditStore.create(url)
    try:
        return tuple(store.switch_state(loop))  # type: ignore[return-value]
    finally:
        store.close()


def test_pausing_one_loop_by_name_stops_only_that_loop(store_url: str) -> None:
    result = runner.invoke(app, ["pause", "security", "--as", "secops-bob", "--reason", "pen test"])
    assert result.exit_code == 0, result.output
    assert "paused the security loop as secops-bob" in result.output
    assert switch_of(store_url, Loop.SECURITY) == (True, "secops-bob", "pen test", "security")
    assert not switch_of(store_url, Loop.RELIABILITY)[0]


def test_pausing_without_a_loop_stops_every_loop_until_resumed(store_url: str) -> None:
    assert runner.invoke(app, ["pause", "--as", "alice", "--reason", "freeze"]).exit_code == 0
    assert all(switch_of(store_url, loop)[0] for loop in Loop)
    result = runner.invoke(app, ["resume", "--as", "alice"])
    assert result.exit_code == 0, result.output
    assert "resumed every loop as alice" in result.output
    assert not any(switch_of(store_url, loop)[0] for loop in Loop)


def test_the_status_lists_every_switch_with_who_pulled_it(store_url: str) -> None:
    runner.invoke(app, ["pause", "reliability", "--as", "alice", "--reason", "db migration"])
    runner.invoke(app, ["pause", "--as", "bob"])
    runner.invoke(app, ["resume", "--as", "bob"])
    result = runner.invoke(app, ["pause", "--status", "--json"])
    assert result.exit_code == 0, result.output
    listed = [(row["scope"], row["paused"], row["by"], row["reason"]) for row in json.loads(result.output)]
    assert listed == [("all", False, "bob", ""), ("reliability", True, "alice", "db migration")]
    table = runner.invoke(app, ["pause", "--status"], terminal_width=200)
    assert "db migration" in table.output and "paused" in table.output


def test_the_status_says_so_when_no_switch_was_ever_pulled(store_url: str) -> None:
    result = runner.invoke(app, ["pause", "--status"])
    assert result.exit_code == 0
    assert "every loop may act" in result.output


def test_pausing_and_resuming_are_audited_under_the_persons_name(store_url: str) -> None:
    runner.invoke(app, ["pause", "security", "--as", "secops-bob", "--reason", "pen test"])
    runner.invoke(app, ["resume", "security", "--as", "secops-alice"])
    store = AuditStore.create(store_url)
    events = store.events("governance")
    store.close()
    assert [(event.step, event.actor) for event in events] == [
        ("paused", "secops-bob"),
        ("resumed", "secops-alice"),
    ]


def test_an_unknown_loop_is_refused_with_the_known_ones(store_url: str) -> None:
    result = runner.invoke(app, ["pause", "billing", "--as", "alice"], terminal_width=200)
    assert result.exit_code == 2
    assert "no loop 'billing'" in result.output and "reliability, security, resource" in result.output
    assert runner.invoke(app, ["resume", "billing", "--as", "alice"]).exit_code == 2
    assert not Path(store_url.removeprefix("sqlite:///")).exists(), "nothing was written"


def test_pausing_without_a_name_is_refused(store_url: str) -> None:
    result = runner.invoke(app, ["pause", "security"], terminal_width=200)
    assert result.exit_code == 2
    assert "--as NAME is required" in result.output


def test_policy_check_prints_every_problem_of_every_file_and_fails(tmp_path: Path) -> None:
    first = tmp_path / "a.yaml"
    first.write_text(
        "policies:\n  - name: x\n    match: {}\n    mode: observe\n    mode: autonomous\n"
        "    actions: [{type: k8s.rollback}]\n"
        "    verify: {query: 'up{ )) sum(', condition: '< 1', window: 0s}\n"
        "    cooldown: 0s\n"
    )
    second = tmp_path / "b.yaml"
    second.write_text(
        "policies:\n  - name: x\n    match: {alertname: A}\n    mode: observe\n"
        "    actions: [{type: k8s.rollback}]\n    verify: {query: up, condition: '< 1'}\n"
    )
    binary = tmp_path / "c.yaml"
    binary.write_bytes(b"policies:\n  - name: \xff\n")

    result = runner.invoke(app, ["policy", "check", str(first), str(second), str(binary)], terminal_width=80)

    assert result.exit_code == 2
    for where, what in [
        (f"{first}:3", "catch_all_autonomous"),
        (f"{first}:5", "duplicate key 'mode'"),
        (f"{first}:7", "not valid PromQL"),
        (f"{first}:7", "zero_verification_window"),
        (f"{first}:8", "zero_cooldown"),
        (f"{second}:2", f"also defined in {first}:2"),
        (f"{binary}:2", "not UTF-8"),
    ]:
        assert any(where in line and what in line for line in result.output.splitlines()), (where, what)
    assert "Traceback" not in result.output
