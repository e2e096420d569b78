"""The command line a user meets first: help, listing, and errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

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
