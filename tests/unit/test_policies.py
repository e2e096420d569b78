"""Policies: loading with file:line errors, pinned versions, decisions, diagnosis.

The action registry has its own meta-test, ``tests/unit/test_registry.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from textwrap import dedent

import pytest
import yaml
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.policy_store import PolicyStore
from policies.diagnosis import diagnose
from policies.engine import decide, select_policy
from policies.loading import default_policy_dir, load_policies, load_policy_file
from policies.models import Policy, PolicyQuery, ReliabilityPolicy
from policies.plan import PlanOutcome
from policies.queries import build_query
from policies.registry import action_spec, registered_actions
from suture.errors import PolicyError
from suture.models import Diagnosis, Loop, Mode, Rollout, RolloutHistory, Target

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
CHECKOUT = Target(kind="deployment", scope="shop", name="checkout")

ROLLBACK = dedent(
    """\
    policies:
      - name: rollback-latency
        match:
          alertname: HighLatency
        mode: autonomous
        min_confidence: 0.8
        signatures:
          - name: bad-rollout
            confidence: 0.9
            recent_rollout_within: 30m
        actions:
          - type: k8s.rollback
        verify:
          query: latency_p99{namespace="$namespace", deployment="$deployment"}
          condition: "< 0.5"
          window: 60s
    """
)


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Policy:
    [policy] = load_policy_file(write(tmp_path, text))
    return policy


def refusal(tmp_path: Path, text: str) -> PolicyError:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as raised:
        load_policy_file(path)
    return raised.value


def line_of(text: str, fragment: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if fragment in line)


def shipped_reliability_policies() -> list[ReliabilityPolicy]:
    return [
        policy for policy in load_policies([default_policy_dir()]) if isinstance(policy, ReliabilityPolicy)
    ]


def history(*ages: timedelta) -> RolloutHistory:
    """Rollouts newest first; the first is current."""
    rollouts = [
        Rollout(
            revision=len(ages) - index,
            replicaset=f"checkout-{index}",
            images=["checkout:1"],
            created_at=NOW - age,
        )
        for index, age in enumerate(ages)
    ]
    return RolloutHistory(target=CHECKOUT, current_revision=len(ages), rollouts=rollouts)


# --- loading and versions ---------------------------------------------------------------


def test_a_valid_policy_file_loads_with_a_pinned_version(tmp_path: Path) -> None:
    policy = load(tmp_path, ROLLBACK)
    assert (policy.name, policy.mode, policy.min_confidence) == ("rollback-latency", Mode.AUTONOMOUS, 0.8)
    assert policy.signatures[0].recent_rollout_within == 1800
    assert len(policy.version) == 12


def test_the_version_changes_when_a_threshold_changes(tmp_path: Path) -> None:
    before = load(tmp_path, ROLLBACK).version
    after = load(tmp_path, ROLLBACK.replace("min_confidence: 0.8", "min_confidence: 0.85")).version
    assert before != after


def test_the_version_stays_when_only_formatting_changes(tmp_path: Path) -> None:
    reformatted = dedent(
        """\
        # the same policy, written differently
        policies:
        - name: rollback-latency
          mode: autonomous
          match: {alertname: HighLatency}
          min_confidence: 0.80
          signatures: [{name: bad-rollout, confidence: 0.9, recent_rollout_within: 1800s}]
          verify: {query: 'latency_p99{namespace="$namespace", deployment="$deployment"}', condition: "< 0.5",
                   window: 1m}
          actions: [{type: k8s.rollback}]
        """
    )
    assert load(tmp_path, reformatted).version == load(tmp_path, ROLLBACK).version


def test_an_unknown_key_is_refused_at_its_file_and_line(tmp_path: Path) -> None:
    text = ROLLBACK.replace("    mode: autonomous\n", "    mode: autonomous\n    min_confidense: 0.5\n")
    error = refusal(tmp_path, text)
    assert error.location == f"{tmp_path / 'policy.yaml'}:{line_of(text, 'min_confidense')}"
    assert "min_confidense" in str(error)


def test_an_unknown_action_is_refused_with_the_known_actions_listed(tmp_path: Path) -> None:
    text = ROLLBACK.replace("type: k8s.rollback", "type: k8s.delete")
    error = refusal(tmp_path, text)
    assert error.location == f"{tmp_path / 'policy.yaml'}:{line_of(text, 'k8s.delete')}"
    assert "unknown action 'k8s.delete'" in str(error)
    for spec in registered_actions():
        assert spec.name in str(error)


@pytest.mark.parametrize(
    ("params", "complaint"),
    [("{by: 2, replicas: 8}", "replicas"), ("{by: 0}", "by"), ("{max_replicas: many}", "max_replicas")],
)
def test_bad_params_for_scaling_are_refused_at_their_line(
    tmp_path: Path, params: str, complaint: str
) -> None:
    text = ROLLBACK.replace("- type: k8s.rollback", f"- type: k8s.scale\n        params: {params}")
    error = refusal(tmp_path, text)
    assert "k8s.scale params" in str(error) and complaint in str(error)
    assert error.location == f"{tmp_path / 'policy.yaml'}:{line_of(text, 'params:')}"


def test_supervised_mode_without_approvers_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, ROLLBACK.replace("mode: autonomous", "mode: supervised"))
    assert "approval" in str(error) and "approvers" in str(error)


def test_an_empty_list_of_approvers_is_refused(tmp_path: Path) -> None:
    text = ROLLBACK.replace("mode: autonomous", "mode: supervised\n    approval:\n      approvers: []")
    error = refusal(tmp_path, text)
    assert "approvers" in str(error)
    assert error.location == f"{tmp_path / 'policy.yaml'}:{line_of(text, 'approvers')}"


def test_two_policies_with_one_name_are_refused(tmp_path: Path) -> None:
    write(tmp_path, ROLLBACK, "a.yaml")
    write(tmp_path, ROLLBACK, "b.yaml")
    with pytest.raises(PolicyError, match="also defined in"):
        load_policies([tmp_path])


def test_the_shipped_default_policies_load() -> None:
    policies = shipped_reliability_policies()
    assert {policy.mode for policy in policies} >= {Mode.AUTONOMOUS, Mode.SUPERVISED}
    assert {step.type for policy in policies for step in policy.actions} == {
        "k8s.rollback",
        "k8s.restart",
        "k8s.scale",
    }


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not installed"
)
def test_the_shipped_default_queries_are_valid_promql(tmp_path: Path) -> None:
    labels = {"namespace": "shop", "deployment": "checkout", "alertname": "x"}
    rules = [
        {"record": f"suture:check:{index}", "expr": build_query(query, labels)}
        for index, query in enumerate(
            query
            for policy in shipped_reliability_policies()
            for query in [*policy.evidence, policy.verify.query]
        )
    ]
    path = write(tmp_path, yaml.safe_dump({"groups": [{"name": "defaults", "rules": rules}]}), "rules.yaml")
    checked = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- selection and the policy store -------------------------------------------------------


def test_the_first_matching_policy_is_selected(tmp_path: Path) -> None:
    policy = load(tmp_path, ROLLBACK)
    assert select_policy([policy], {"alertname": "HighLatency", "namespace": "shop"}) == policy
    assert select_policy([policy], {"alertname": "DiskFull"}) is None


def test_the_policy_store_selects_by_loop_and_labels(tmp_path: Path) -> None:
    write(tmp_path, ROLLBACK)
    store = PolicyStore([tmp_path])
    selection = ActivityEnvironment().run(
        store.select, PolicyQuery(loop=Loop.RELIABILITY, labels={"alertname": "HighLatency"})
    )
    assert selection.policy is not None and selection.policy.name == "rollback-latency"
    assert selection.considered == 1
    missing = ActivityEnvironment().run(
        store.select, PolicyQuery(loop=Loop.RELIABILITY, labels={"alertname": "Other"})
    )
    assert missing.policy is None


def test_the_policy_store_serves_an_edited_file_without_a_restart(tmp_path: Path) -> None:
    path = write(tmp_path, ROLLBACK)
    store = PolicyStore([tmp_path])
    first = store.policies()[0]
    path.write_text(ROLLBACK.replace("min_confidence: 0.8", "min_confidence: 0.95"), encoding="utf-8")
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    edited = store.policies()[0]
    assert (first.min_confidence, edited.min_confidence) == (0.8, 0.95)
    assert first.version != edited.version


def test_a_worker_does_not_start_on_a_broken_policy_set(tmp_path: Path) -> None:
    write(tmp_path, ROLLBACK.replace("type: k8s.rollback", "type: k8s.delete"))
    with pytest.raises(PolicyError, match=r"policy\.yaml:\d+: "):
        PolicyStore([tmp_path])


def test_a_policy_broken_after_start_fails_selection_loudly_and_for_good(tmp_path: Path) -> None:
    path = write(tmp_path, ROLLBACK)
    store = PolicyStore([tmp_path])
    path.write_text(ROLLBACK.replace("mode: autonomous", "mode: reckless"), encoding="utf-8")
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(
            store.select, PolicyQuery(loop=Loop.RELIABILITY, labels={"alertname": "HighLatency"})
        )
    assert raised.value.non_retryable
    assert raised.value.type == "PolicyError"
    assert f"policy.yaml:{line_of(ROLLBACK, 'mode:')}" in str(raised.value)


# --- decisions ------------------------------------------------------------------------------


def test_below_the_confidence_threshold_nothing_is_done_and_the_reason_says_so(tmp_path: Path) -> None:
    policy = load(tmp_path, ROLLBACK)
    decision = decide(
        policy,
        Diagnosis(signature=None, confidence=0.3, summary="no known signature matches"),
        CHECKOUT,
        "fp-1",
    )
    assert not decision.act
    assert decision.actions == []
    assert "confidence 0.30 is below the policy's 0.80" in decision.reason
    assert decision.would_have_done == [
        f"{action_spec('k8s.rollback').summary} (k8s.rollback on shop/checkout)"
    ]


def test_an_autonomous_policy_acts_with_keys_built_from_incident_action_and_target(tmp_path: Path) -> None:
    policy = load(tmp_path, ROLLBACK)
    decision = decide(
        policy, Diagnosis(signature="bad-rollout", confidence=0.9, summary="bad rollout"), CHECKOUT, "fp-1"
    )
    assert decision.act
    assert [(action.type, action.mode, action.idempotency_key) for action in decision.actions] == [
        ("k8s.rollback", Mode.AUTONOMOUS, "fp-1:k8s.rollback:shop/checkout")
    ]


def test_a_dry_run_policy_only_says_what_it_would_have_done(tmp_path: Path) -> None:
    policy = load(tmp_path, ROLLBACK.replace("mode: autonomous", "mode: dry_run"))
    decision = decide(
        policy, Diagnosis(signature="bad-rollout", confidence=0.9, summary="bad rollout"), CHECKOUT, "fp-1"
    )
    assert decision.outcome == PlanOutcome.DRY_RUN
    assert decision.actions == []
    assert decision.would_have_done


def test_low_confidence_escalates_as_a_type_whatever_the_mode_and_the_wording(tmp_path: Path) -> None:
    for mode in ("dry_run", "observe", "autonomous"):
        policy = load(tmp_path, ROLLBACK.replace("mode: autonomous", f"mode: {mode}"))
        unsure = Diagnosis(signature=None, confidence=0.3, summary="a summary without the usual words")
        assert decide(policy, unsure, CHECKOUT, "fp-1").outcome == PlanOutcome.ESCALATE


# --- diagnosis -----------------------------------------------------------------------------


def test_a_rollout_inside_the_signature_window_matches_it(tmp_path: Path) -> None:
    diagnosis = diagnose(load(tmp_path, ROLLBACK), history(timedelta(minutes=5), timedelta(days=3)), NOW)
    assert (diagnosis.signature, diagnosis.confidence) == ("bad-rollout", 0.9)
    assert diagnosis.recent_changes[0].startswith("revision 2 (checkout:1) rolled out 5m ago")


def test_a_rollout_older_than_the_window_falls_back_to_the_base_confidence(tmp_path: Path) -> None:
    diagnosis = diagnose(load(tmp_path, ROLLBACK), history(timedelta(hours=2), timedelta(days=3)), NOW)
    assert (diagnosis.signature, diagnosis.confidence) == (None, 0.3)


def test_without_rollout_history_a_rollout_signature_cannot_match(tmp_path: Path) -> None:
    diagnosis = diagnose(load(tmp_path, ROLLBACK), None, NOW)
    assert diagnosis.signature is None
    assert diagnosis.recent_changes == []
