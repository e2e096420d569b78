"""What-if: a policy's decision for a recorded alert or event, and a backtest of a changed policy."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from policies.loading import load_policy_file
from policies.trust import ASSESSED, TRUST_EVIDENCE, AssessedIncident, IncidentSignature
from policies.whatif import Change, Stub, Verdict, change_between, decide_input, input_evidence, input_of
from suture.audit_chain import AuditKey
from suture.errors import SutureError
from suture.models import AlertNotice, AuditEntry, Evidence, Loop, LoopResult, Mode, Outcome, Timeline
from suture.store import AuditStore
from workers.cli import app
from workers.whatif_cli import backtest, read_inputs

ROOT = Path(__file__).parents[2]
SANDBOX = ROOT / "sandbox" / "policies"
NOW = datetime.now(UTC).replace(microsecond=0)

LATENCY = """\
policies:
  - name: rollback-latency
    match: {alertname: HighLatency}
    mode: MODE
    signatures:
      - name: regression-after-rollout
        recent_rollout_within: 30m
        confidence: 0.85
    actions:
      - type: k8s.rollback
    verify:
      query: 'latency_p99{namespace="$namespace",service="$service"}'
      condition: '< 0.5'
    cooldown: 10m
"""


def alert(name: str = "SandboxHighLatency", service: str = "checkout") -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": name, "namespace": "shop", "service": service, "deployment": service},
        "annotations": {"summary": "slow"},
        "startsAt": "2026-05-01T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": f"fp-{service}",
    }


def payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {"version": "4", "groupKey": "g", "status": "firing", "receiver": "suture", "alerts": list(alerts)}


def ssh_opened_to_the_world() -> dict[str, Any]:
    permission = {
        "ipProtocol": "tcp",
        "fromPort": 22,
        "toPort": 22,
        "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]},
    }
    return {
        "version": "0",
        "id": "ev-1",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2026-05-01T10:00:00Z",
        "region": "us-east-1",
        "detail": {
            "eventTime": "2026-05-01T10:00:00Z",
            "eventSource": "ec2.amazonaws.com",
            "eventName": "AuthorizeSecurityGroupIngress",
            "awsRegion": "us-east-1",
            "sourceIPAddress": "203.0.113.66",
            "userIdentity": {"type": "IAMUser", "userName": "dev", "accessKeyId": "AKIAEXAMPLEKEY00001"},
            "eventID": "ct-1",
            "requestParameters": {"groupId": "sg-0123", "ipPermissions": {"items": [permission]}},
        },
    }


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_a_recorded_alert_after_a_recent_rollout_would_be_rolled_back(tmp_path: Path) -> None:
    given = read_inputs(write(tmp_path / "alert.json", payload(alert())))
    policies = load_policy_file(SANDBOX / "reliability.yaml")

    decision = decide_input(policies, given[0], Stub(rollout_age_s=300))

    assert (decision.policy, decision.verdict, decision.mode) == (
        "sandbox-latency-after-rollout",
        Verdict.ACT,
        Mode.AUTONOMOUS,
    )
    assert decision.actions == ["k8s.rollback on shop/checkout"]
    assert "rolled out 300s before the alert fired" in decision.stubbed[0]


def test_without_a_rollout_history_the_same_alert_escalates_and_says_what_was_assumed(tmp_path: Path) -> None:
    given = read_inputs(write(tmp_path / "alert.json", alert()))
    policies = load_policy_file(SANDBOX / "reliability.yaml")

    decision = decide_input(policies, given[0], Stub())

    assert decision.verdict == Verdict.ESCALATE and decision.actions == []
    assert "no rollout history" in decision.stubbed[0]
    assert "trust gate" in decision.not_applied


def test_an_alert_no_policy_matches_is_said_to_match_none(tmp_path: Path) -> None:
    given = read_inputs(write(tmp_path / "alert.json", payload(alert("DiskFull"))))

    decision = decide_input(load_policy_file(SANDBOX / "reliability.yaml"), given[0], Stub())

    assert decision.verdict == Verdict.NO_POLICY and decision.policy is None


def test_ssh_opened_to_the_world_would_lose_that_rule(tmp_path: Path) -> None:
    given = read_inputs(write(tmp_path / "event.json", ssh_opened_to_the_world()))

    decision = decide_input(load_policy_file(SANDBOX / "security.yaml"), given[0], Stub())

    assert (decision.policy, decision.verdict) == ("sandbox-world-open-ingress", Verdict.ACT)
    assert [action.split(" on ")[0] for action in decision.actions] == ["ec2.revoke_ingress"]


def test_a_file_that_is_neither_alert_nor_event_is_one_line_naming_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(SutureError, match="neither an Alertmanager webhook payload"):
        read_inputs(write(tmp_path / "other.json", {"hello": "world"}))


def test_a_decision_that_acts_where_the_other_did_not_brings_more_actions(tmp_path: Path) -> None:
    given = AlertNotice.model_validate(_notice())
    before = decide_input(_policies(tmp_path, "dry_run"), given, Stub(rollout_age_s=60))
    after = decide_input(_policies(tmp_path, "autonomous"), given, Stub(rollout_age_s=60))
    supervised = decide_input(_policies(tmp_path, "supervised"), given, Stub(rollout_age_s=60))

    assert change_between(before, after) == Change.MORE
    assert change_between(after, before) == Change.FEWER
    assert change_between(after, supervised) == Change.DIFFERENT
    assert change_between(after, after) == Change.SAME


def test_a_run_keeps_its_input_in_a_form_the_backtest_reads_back() -> None:
    given = AlertNotice.model_validate(_notice())

    assert input_of(input_evidence(given)) == given


def test_the_backtest_replays_recorded_inputs_and_counts_what_a_changed_policy_changes_per_policy(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "latency.yaml").write_text(LATENCY.replace("MODE", "dry_run"), encoding="utf-8")
    changed = tmp_path / "latency.yaml"
    changed.write_text(LATENCY.replace("MODE", "autonomous"), encoding="utf-8")
    store = AuditStore.create(f"sqlite:///{tmp_path / 'audit.db'}", key=AuditKey(b"k" * 32))
    _closed_run(store, "reliability-1", input_kept=True)
    _closed_run(store, "reliability-2", input_kept=False)

    found = backtest(store, [folder], changed, NOW - timedelta(days=30))

    assert (found["replayed"], found["skipped_without_input"]) == (1, 1)
    assert found["policies"] == [
        {
            "policy": "rollback-latency",
            "runs": 1,
            "same": 0,
            "more actions": 1,
            "fewer actions": 0,
            "different": 0,
        }
    ]
    assert found["changes"][0]["after"] == (
        "rollback-latency: act (autonomous): k8s.rollback on shop/checkout"
    )


def test_policy_test_prints_the_decision_as_json(tmp_path: Path) -> None:
    path = write(tmp_path / "alert.json", payload(alert()))
    result = CliRunner().invoke(
        app,
        ["policy", "test", str(SANDBOX / "reliability.yaml"), str(path), "--rollout-age", "5m", "--json"],
    )

    assert result.exit_code == 0, result.output
    [decision] = json.loads(result.output)
    assert (decision["verdict"], decision["actions"]) == ("act", ["k8s.rollback on shop/checkout"])


def _policies(folder: Path, mode: str) -> list[Any]:
    path = folder / f"{mode}.yaml"
    text = LATENCY.replace("MODE", mode)
    if mode == "supervised":
        text += "    approval: {approvers: [oncall-alice]}\n"
    path.write_text(text, encoding="utf-8")
    return list(load_policy_file(path))


def _notice() -> dict[str, Any]:
    return {
        "fingerprint": "fp-checkout",
        "status": "firing",
        "labels": {
            "alertname": "HighLatency",
            "namespace": "shop",
            "service": "checkout",
            "deployment": "checkout",
        },
        "starts_at": NOW - timedelta(hours=1),
        "received_at": NOW - timedelta(hours=1),
    }


def _closed_run(store: AuditStore, run: str, *, input_kept: bool) -> None:
    given = AlertNotice.model_validate(_notice())
    detected: list[Evidence] = [input_evidence(given)] if input_kept else []
    signature = IncidentSignature(
        loop=Loop.RELIABILITY, alert="HighLatency", service="shop/checkout", change="rollout"
    )
    incident = AssessedIncident(policy="rollback-latency", actions=["k8s.rollback"], signature=signature)
    assessed = Evidence(source=TRUST_EVIDENCE, query=ASSESSED, value=incident.model_dump_json(), at=NOW)
    for seq, (step, evidence) in enumerate([("detected", detected), (ASSESSED, [assessed])], start=1):
        store.record(
            AuditEntry(
                workflow_id=run,
                seq=seq,
                loop=Loop.RELIABILITY,
                subject="shop/checkout",
                step=step,
                detail=step,
                evidence=evidence,
                at=NOW - timedelta(hours=1),
            )
        )
    store.close_run(
        LoopResult(
            workflow_id=run,
            loop=Loop.RELIABILITY,
            subject="shop/checkout",
            outcome=Outcome.DRY_RUN,
            mode=Mode.DRY_RUN,
            reason="policy mode is dry_run",
            policy="rollback-latency",
            timeline=Timeline(detected=NOW - timedelta(hours=1), closed=NOW - timedelta(minutes=59)),
        )
    )
