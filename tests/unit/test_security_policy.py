"""Detection rules, risk scores and the Containment Scope Index, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from policies.containment import plan_containment
from policies.detection import (
    assess_bucket,
    assess_credential,
    assess_ingress,
    assess_policy_attachment,
    is_admin_equivalent,
    labels_of,
    signal_of,
)
from policies.loading import default_policy_dir, load_policy_file
from policies.models import PolicyFile, PolicySelection
from policies.registry import action_spec
from policies.scope import CONTAINMENT_SCOPE_INDEX, SignalType
from policies.security_policy import Detection, SecurityPolicy
from policies.targets import IngressRuleRef
from suture.errors import PolicyError
from suture.identity import security_subject, security_workflow_id
from suture.models import AwsEvent, AwsPrincipal, CredentialActivity, Mode

ACCOUNT = "123456789012"
NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
RULES = Detection()


def event(name: str, params: dict[str, Any] | None = None, **fields: Any) -> AwsEvent:
    principal = fields.pop(
        "principal",
        AwsPrincipal(type="IAMUser", user_name="ci-deployer", access_key_id="AKIAEXAMPLEKEY00001"),
    )
    return AwsEvent(
        event_id=fields.pop("event_id", "e-1"),
        account=ACCOUNT,
        region="us-east-1",
        event_name=name,
        event_source=fields.pop("event_source", "ec2.amazonaws.com"),
        event_time=NOW,
        principal=principal,
        request_parameters=params or {},
        received_at=NOW,
        **fields,
    )


def ingress(cidr: str, port: int, protocol: str = "tcp", v6: bool = False) -> AwsEvent:
    ranges = (
        {"ipv6Ranges": {"items": [{"cidrIpv6": cidr}]}} if v6 else {"ipRanges": {"items": [{"cidrIp": cidr}]}}
    )
    permission = {"ipProtocol": protocol, "fromPort": port, "toPort": port, **ranges}
    return event(
        "AuthorizeSecurityGroupIngress", {"groupId": "sg-0web", "ipPermissions": {"items": [permission]}}
    )


def baseline(**fields: Any) -> CredentialActivity:
    defaults: dict[str, Any] = {
        "calls": 120,
        "successful_calls": 120,
        "source_ips": ["10.0.1.15", "10.0.1.16"],
        "event_names": ["DescribeInstances", "GetObject", "PutObject"],
        "user_agents": ["aws-cli/2.15.0"],
        "source": "cloudwatch-logs:trail",
    }
    return CredentialActivity(**(defaults | fields))


def policy(**fields: Any) -> SecurityPolicy:
    defaults: dict[str, Any] = {
        "name": "test",
        "match": {"accounts": [ACCOUNT]},
        "mode": "autonomous",
        "actions": [
            {"type": "iam.deactivate_access_key"},
            {"type": "ec2.revoke_ingress"},
            {"type": "iam.detach_policy"},
            {"type": "s3.restore_public_access_block"},
        ],
        "approval": {"approvers": ["secops"], "timeout": "5m"},
    }
    return SecurityPolicy.model_validate(defaults | fields)


# --- detection ---------------------------------------------------------------------------


def test_ssh_opened_to_the_world_is_high_risk_and_names_that_one_rule() -> None:
    finding = assess_ingress(ingress("0.0.0.0/0", 22), RULES)

    assert finding.signal == SignalType.INGRESS_OPENED
    assert finding.risk >= 0.9
    [target] = finding.targets
    assert target.target.kind == "ingress-rule"
    assert IngressRuleRef.model_validate(target.ref) == IngressRuleRef(
        region="us-east-1", group_id="sg-0web", protocol="tcp", from_port=22, to_port=22, cidr="0.0.0.0/0"
    )


def test_ipv6_world_and_all_traffic_rules_count_as_sensitive() -> None:
    assert assess_ingress(ingress("::/0", 3389, v6=True), RULES).risk >= 0.9
    assert assess_ingress(ingress("0.0.0.0/0", -1, protocol="-1"), RULES).risk >= 0.9


def test_a_private_cidr_is_not_a_finding_worth_acting_on() -> None:
    finding = assess_ingress(ingress("10.20.0.0/16", 5432), RULES)

    assert finding.risk == 0.0
    assert "private" in finding.reasons[0]


def test_https_open_to_the_world_stays_below_the_default_floor() -> None:
    assert assess_ingress(ingress("0.0.0.0/0", 443), RULES).risk < policy().risk.ignore_below


def test_a_key_used_from_a_new_source_on_new_recon_apis_scores_high() -> None:
    suspicious = event("ListBuckets", source_ip="203.0.113.66", user_agent="python-requests/2.31")

    finding = assess_credential(suspicious, RULES, baseline())

    assert finding.signal == SignalType.ACCESS_KEY_ANOMALY
    assert finding.risk >= 0.8
    assert any("203.0.113.66" in reason for reason in finding.reasons)
    [target] = finding.targets
    assert target.target.name == "ci-deployer/AKIAEXAMPLEKEY00001"


def test_the_risk_grows_with_the_evidence_rather_than_flipping() -> None:
    usual = event("GetObject", source_ip="10.0.1.15", user_agent="aws-cli/2.15.0")
    new_api = event("DeleteObject", source_ip="10.0.1.15", user_agent="aws-cli/2.15.0")
    new_api_and_source = event("DeleteObject", source_ip="198.51.100.7", user_agent="aws-cli/2.15.0")

    scores = [assess_credential(e, RULES, baseline()).risk for e in (usual, new_api, new_api_and_source)]

    assert scores[0] == 0.0
    assert 0.0 < scores[1] < scores[2] < 1.0


def test_a_source_next_to_a_known_one_weighs_less_than_a_new_one() -> None:
    nearby = assess_credential(event("GetObject", source_ip="10.0.1.99"), RULES, baseline()).risk
    far = assess_credential(event("GetObject", source_ip="198.51.100.7"), RULES, baseline()).risk

    assert 0.0 < nearby < far


def test_session_keys_of_a_user_are_not_offered_as_a_target() -> None:
    session = AwsPrincipal(type="IAMUser", user_name="ci-deployer", access_key_id="ASIAEXAMPLESESSION1")

    finding = assess_credential(
        event("ListBuckets", source_ip="203.0.113.66", principal=session), RULES, baseline()
    )

    assert finding.targets == []


def test_admin_policy_attached_is_high_risk_and_other_policies_are_not() -> None:
    params = {"userName": "intern", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}
    admin = assess_policy_attachment(event("AttachUserPolicy", params), RULES, None)
    read_only = assess_policy_attachment(
        event(
            "AttachUserPolicy", {"userName": "intern", "policyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}
        ),
        RULES,
        {"Statement": [{"Effect": "Allow", "Action": ["s3:Get*"], "Resource": "*"}]},
    )

    assert admin.risk >= 0.9
    assert admin.targets[0].target.name == "user/intern/AdministratorAccess"
    assert read_only.risk == 0.0


def test_a_customer_policy_is_admin_equivalent_when_it_allows_everything_or_all_of_iam() -> None:
    assert is_admin_equivalent({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}})
    assert is_admin_equivalent({"Statement": [{"Effect": "Allow", "Action": ["IAM:*"], "Resource": ["*"]}]})
    assert not is_admin_equivalent({"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]})
    assert not is_admin_equivalent(
        {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::x"}]}
    )


def test_removing_a_bucket_block_is_a_finding_unless_the_bucket_is_meant_to_be_public() -> None:
    removed = event(
        "DeleteBucketPublicAccessBlock", {"bucketName": "customer-data"}, event_source="s3.amazonaws.com"
    )

    assert assess_bucket(removed, RULES).risk >= 0.9
    assert assess_bucket(removed, Detection(public_buckets=["customer-data"])).risk == 0.0


def test_tightening_a_bucket_block_is_not_a_finding() -> None:
    config = dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
    )
    put = event("PutBucketPublicAccessBlock", {"bucketName": "b", "PublicAccessBlockConfiguration": config})

    assert assess_bucket(put, RULES).risk == 0.0


def test_resource_changes_take_precedence_over_the_caller_and_failed_changes_are_no_signal() -> None:
    assert signal_of(ingress("0.0.0.0/0", 22)) == SignalType.INGRESS_OPENED
    assert signal_of(event("AuthorizeSecurityGroupIngress", error_code="AccessDenied")) == (
        SignalType.ACCESS_KEY_ANOMALY
    )
    role = AwsPrincipal(type="AssumedRole", role_arn=f"arn:aws:iam::{ACCOUNT}:role/shared-app")
    assert signal_of(event("ListBuckets", principal=role)) == SignalType.ROLE_CREDENTIAL_ANOMALY
    assert signal_of(event("ListBuckets", principal=AwsPrincipal(type="AWSService"))) is None


def test_labels_carry_what_a_policy_matches_on() -> None:
    labels = labels_of(ingress("0.0.0.0/0", 22), SignalType.INGRESS_OPENED)

    assert labels["account"] == ACCOUNT
    assert labels["signal"] == "ingress_opened"
    ingress_only = {"accounts": [ACCOUNT], "signals": ["ingress_opened"]}
    assert policy(match=ingress_only, actions=[{"type": "ec2.revoke_ingress"}]).match.accepts(labels)
    assert not policy(match={"accounts": ["210987654321"]}).match.accepts(labels)


def test_workflow_ids_come_from_the_account_and_the_event_id_not_its_content() -> None:
    opened = ingress("0.0.0.0/0", 22)
    tampered = opened.model_copy(update={"request_parameters": {"groupId": "sg-0other"}})

    assert security_subject(opened) == "sg-0web"
    assert security_workflow_id(opened) == f"security-{ACCOUNT}-e-1"
    assert security_workflow_id(tampered) == security_workflow_id(opened)


# --- the Containment Scope Index and the plan -------------------------------------------------


def test_every_index_action_is_registered_for_the_security_loop_with_an_undo() -> None:
    for scope in CONTAINMENT_SCOPE_INDEX.values():
        if scope.action is None:
            continue
        spec = action_spec(scope.action)
        assert spec.loop == "security"
        assert spec.prepare and spec.do and spec.undo and spec.permissions and spec.blast_radius


def test_no_index_entry_reaches_a_whole_user_role_or_group() -> None:
    kinds = {scope.target_kind for scope in CONTAINMENT_SCOPE_INDEX.values()}

    assert kinds.isdisjoint({"user", "role", "group", "security-group"})
    assert CONTAINMENT_SCOPE_INDEX[SignalType.ROLE_CREDENTIAL_ANOMALY].action is None


def test_high_risk_plans_one_autonomous_action_on_the_narrowest_target() -> None:
    finding = assess_ingress(ingress("0.0.0.0/0", 22), RULES)

    plan = plan_containment(policy(), finding, "e-1")

    assert plan.outcome == "act"
    [action] = plan.actions
    assert action.type == "ec2.revoke_ingress"
    assert action.mode == Mode.AUTONOMOUS
    assert action.idempotency_key == f"e-1:ec2.revoke_ingress:{ACCOUNT}/sg-0web/tcp:22-22/0.0.0.0/0"


def test_moderate_risk_is_supervised_and_low_risk_is_suppressed() -> None:
    moderate = assess_credential(event("DeleteObject", source_ip="10.0.1.15"), RULES, baseline())
    low = assess_credential(event("GetObject", source_ip="10.0.1.15"), RULES, baseline())

    assert plan_containment(policy(), moderate, "e-1").mode == Mode.SUPERVISED
    assert plan_containment(policy(), low, "e-1").outcome == "suppressed"


def test_a_role_anomaly_is_escalated_because_no_action_fits_one_session() -> None:
    role = AwsPrincipal(type="AssumedRole", role_arn=f"arn:aws:iam::{ACCOUNT}:role/shared-app")
    finding = assess_credential(
        event("ListBuckets", source_ip="203.0.113.66", principal=role), RULES, baseline()
    )

    plan = plan_containment(policy(), finding, "e-1")

    assert plan.outcome == "escalate"
    assert plan.actions == []
    assert "every workload" in plan.reason


def test_observe_mode_plans_a_dry_run() -> None:
    finding = assess_ingress(ingress("0.0.0.0/0", 22), RULES)

    plan = plan_containment(policy(mode="observe", approval=None), finding, "e-1")

    assert plan.outcome == "dry_run"
    assert plan.would_have_done and not plan.actions


# --- the policy schema ------------------------------------------------------------------------


def test_a_policy_cannot_name_an_action_outside_the_index_for_its_signals() -> None:
    with pytest.raises(ValueError, match="Containment Scope Index"):
        policy(
            match={"accounts": [ACCOUNT], "signals": ["ingress_opened"]},
            actions=[{"type": "iam.detach_policy"}],
        )


def test_a_policy_that_may_be_supervised_needs_approvers() -> None:
    with pytest.raises(ValueError, match="approvers"):
        policy(approval=None)


def test_security_and_reliability_policies_load_from_one_file_with_exact_lines(tmp_path: Path) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(
        "policies:\n"
        "  - name: latency\n"
        "    match: {alertname: HighLatency}\n"
        "    mode: observe\n"
        "    actions: [{type: k8s.rollback}]\n"
        "    verify: {query: up, condition: '> 0'}\n"
        "  - name: keys\n"
        "    loop: security\n"
        "    match:\n"
        "      accounts: ['12345']\n"
        "    mode: observe\n"
    )

    with pytest.raises(PolicyError) as raised:
        load_policy_file(path)

    assert str(raised.value).startswith(f"{path}:10:")
    assert "12-digit" in str(raised.value)


def test_the_shipped_security_policies_load_and_survive_a_round_trip() -> None:
    loaded = [p for p in load_policy_file(default_policy_dir() / "security.yaml")]

    assert {p.loop for p in loaded} == {"security"}
    selection = PolicySelection(policy=loaded[0], considered=len(loaded))
    assert PolicySelection.model_validate(selection.model_dump(mode="json")) == selection
    assert PolicyFile.model_validate({"policies": [p.model_dump() for p in loaded]}).policies == loaded


def test_a_risky_rule_on_a_group_the_event_does_not_name_is_escalated_not_guessed() -> None:
    unnamed = ingress("0.0.0.0/0", 22).model_copy(
        update={
            "request_parameters": {
                "ipPermissions": ingress("0.0.0.0/0", 22).request_parameters["ipPermissions"]
            }
        }
    )

    finding = assess_ingress(unnamed, RULES)

    assert finding.risk >= 0.9 and finding.targets == []
    assert plan_containment(policy(), finding, "e-1").outcome == "escalate"
