"""`suture up --sandbox` gives people time to answer; `suture sandbox fire` finds the running sandbox."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from policies.loading import load_policy_file
from sandbox.living import HUMAN_TIMEOUT_S, SCENARIOS, human_paced_policies
from sandbox.stack import SANDBOX_POLICIES
from suture.models import ChannelKind
from workers.cli import app


def test_the_living_policies_wait_minutes_for_a_human_and_post_to_the_slack_receiver(tmp_path: Path) -> None:
    folder = human_paced_policies(tmp_path / "living", "http://127.0.0.1:9/services/sandbox")
    policies = [policy for path in sorted(folder.glob("*.yaml")) for policy in load_policy_file(path)]
    drills = [policy for path in sorted(SANDBOX_POLICIES.glob("*.yaml")) for policy in load_policy_file(path)]
    assert [policy.name for policy in policies] == [policy.name for policy in drills]
    supervised = [policy for policy in policies if policy.approval is not None]
    assert supervised and all(policy.approval.timeout >= HUMAN_TIMEOUT_S for policy in supervised)  # type: ignore[union-attr]
    assert all(
        policy.notify is not None and policy.notify.channels[0].kind == ChannelKind.SLACK
        for policy in policies
    )
    saturation = next(policy for policy in drills if policy.name == "sandbox-saturation")
    assert saturation.approval is not None and saturation.approval.timeout < 60, (
        "the drills keep theirs short"
    )


def test_a_supervised_scenario_is_among_those_fired_by_hand() -> None:
    assert "supervised" in SCENARIOS["saturation"].policy


def test_fire_without_a_running_sandbox_says_how_to_start_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["sandbox", "fire", "saturation"], env={"SUTURE_STATE_DIR": str(tmp_path)}
    )
    assert result.exit_code == 2
    assert "start one with `suture up --sandbox`" in result.output
    assert "Traceback" not in result.output
