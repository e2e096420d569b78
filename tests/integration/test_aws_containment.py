"""AWS containment against moto in server mode over loopback, with boto3 unchanged.

The activities are called as the worker would call them; the sandbox plays the
estate's actors and CloudTrail.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.aws import AwsContainment
from policies.targets import AccessKeyRef, BucketRef, IngressRuleRef, PolicyAttachmentRef, TargetRef
from sandbox.aws import SANDBOX_ACCOUNT, AwsEstate, MotoSandbox
from suture.models import (
    ContainmentCheck,
    CredentialQuery,
    Mode,
    PlannedAction,
    PolicyDocumentRequest,
    RoleDependentsRequest,
    Target,
    Verdict,
)

pytestmark = pytest.mark.integration

REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoSandbox]:
    with MotoSandbox() as sandbox:
        yield sandbox


@pytest.fixture
def estate(moto: MotoSandbox) -> AwsEstate:
    return moto.seed(f"t{uuid.uuid4().hex[:6]}-", workloads=3)


@pytest.fixture(scope="module")
def aws(moto: MotoSandbox) -> AwsContainment:
    return moto.containment()


def planned(kind: str, name: str, action: str, ref: TargetRef, **params: object) -> PlannedAction:
    return PlannedAction(
        type=action,
        target=Target(kind=kind, scope=SANDBOX_ACCOUNT, name=name),
        params={**params, "target": ref.model_dump()},
        mode=Mode.AUTONOMOUS,
        idempotency_key=f"test:{action}:{name}",
    )


def key_action(estate: AwsEstate, index: int = 0) -> PlannedAction:
    key = estate.users[estate.deployer][index]
    ref = AccessKeyRef(region=REGION, user_name=estate.deployer, access_key_id=key)
    return planned("access-key", f"{estate.deployer}/{key}", "iam.deactivate_access_key", ref)


def ssh_action(estate: AwsEstate, cidr: str = "0.0.0.0/0") -> PlannedAction:
    group = estate.groups["web"]
    ref = IngressRuleRef(region=REGION, group_id=group, protocol="tcp", from_port=22, to_port=22, cidr=cidr)
    return planned("ingress-rule", f"{group}/tcp:22-22/{cidr}", "ec2.revoke_ingress", ref)


# --- access keys ------------------------------------------------------------------------------


def test_deactivating_a_key_leaves_the_users_other_key_active(
    moto: MotoSandbox, aws: AwsContainment, estate: AwsEstate
) -> None:
    first, second = estate.users[estate.deployer]
    snapshot = aws.snapshot_access_key(key_action(estate))

    outcome = aws.deactivate_access_key(snapshot)

    assert outcome.changed
    assert moto.key_status(estate.deployer, first) == "Inactive"
    assert moto.key_status(estate.deployer, second) == "Active"
    assert [e.note.split(" (")[0] for e in outcome.evidence] == ["credential disabled"]
    assert snapshot.state["status"] == "Active"


def test_deactivating_twice_is_a_success_that_changes_nothing(aws: AwsContainment, estate: AwsEstate) -> None:
    aws.deactivate_access_key(aws.snapshot_access_key(key_action(estate)))

    again = aws.deactivate_access_key(aws.snapshot_access_key(key_action(estate)))

    assert not again.changed
    assert "already Inactive" in again.detail


def test_a_retry_after_a_crash_still_says_the_key_was_deactivated(
    aws: AwsContainment, estate: AwsEstate
) -> None:
    snapshot = aws.snapshot_access_key(key_action(estate))
    aws.deactivate_access_key(snapshot)

    retry = aws.deactivate_access_key(snapshot)

    key = estate.users[estate.deployer][0]
    assert not retry.changed
    assert retry.detail.startswith(f"access key {key} of {estate.deployer} is Inactive")
    assert "earlier attempt" in retry.detail


def test_the_undo_reactivates_the_key_from_its_snapshot(
    moto: MotoSandbox, aws: AwsContainment, estate: AwsEstate
) -> None:
    snapshot = aws.snapshot_access_key(key_action(estate))
    aws.deactivate_access_key(snapshot)

    undone = aws.reactivate_access_key(snapshot)

    assert undone.changed
    assert moto.key_status(estate.deployer, estate.users[estate.deployer][0]) == "Active"
    assert not aws.reactivate_access_key(snapshot).changed


def test_a_key_of_another_user_is_not_found_and_not_retried(aws: AwsContainment, estate: AwsEstate) -> None:
    analyst_key = estate.users[f"{estate.prefix}analyst"][0]
    ref = AccessKeyRef(region=REGION, user_name=estate.deployer, access_key_id=analyst_key)
    action = planned("access-key", "x", "iam.deactivate_access_key", ref)

    with pytest.raises(ApplicationError) as raised:
        aws.snapshot_access_key(action)

    assert raised.value.type == "TargetNotFound"
    assert raised.value.non_retryable


# --- security-group rules ---------------------------------------------------------------------


def test_revoking_one_rule_leaves_the_groups_other_rules(
    moto: MotoSandbox, aws: AwsContainment, estate: AwsEstate
) -> None:
    group = estate.groups["web"]
    moto.client("ec2").authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )
    before = moto.ingress_rules(group)
    snapshot = aws.snapshot_ingress(ssh_action(estate))

    outcome = aws.revoke_ingress(snapshot)

    assert outcome.changed
    assert moto.ingress_rules(group) == before - {("tcp", 22, 22, "0.0.0.0/0")}
    assert ("tcp", 22, 22, "10.0.0.0/8") in moto.ingress_rules(group)
    assert not aws.revoke_ingress(snapshot).changed


def test_the_undo_authorizes_the_same_rule_again(
    moto: MotoSandbox, aws: AwsContainment, estate: AwsEstate
) -> None:
    group = estate.groups["web"]
    snapshot = aws.snapshot_ingress(ssh_action(estate, cidr="10.0.0.0/8"))
    aws.revoke_ingress(snapshot)

    undone = aws.authorize_ingress(snapshot)

    assert undone.changed
    assert ("tcp", 22, 22, "10.0.0.0/8") in moto.ingress_rules(group)
    assert snapshot.state["description"] == "bastion"
    assert not aws.authorize_ingress(snapshot).changed


# --- policy attachments -------------------------------------------------------------------------


def test_detaching_a_policy_touches_only_that_attachment(
    moto: MotoSandbox, aws: AwsContainment, estate: AwsEstate
) -> None:
    iam = moto.client("iam")
    user = f"{estate.prefix}analyst"
    iam.attach_user_policy(UserName=user, PolicyArn=estate.admin_policy_arn)
    ref = PolicyAttachmentRef(
        region=REGION, principal_kind="user", principal_name=user, policy_arn=estate.admin_policy_arn
    )
    snapshot = aws.snapshot_policy_attachment(planned("policy-attachment", user, "iam.detach_policy", ref))

    assert aws.detach_policy(snapshot).changed
    assert iam.list_attached_user_policies(UserName=user)["AttachedPolicies"] == []
    assert iam.get_policy(PolicyArn=estate.admin_policy_arn)["Policy"]["Arn"] == estate.admin_policy_arn
    assert not aws.detach_policy(snapshot).changed

    assert aws.attach_policy(snapshot).changed
    assert len(iam.list_attached_user_policies(UserName=user)["AttachedPolicies"]) == 1


def test_a_customer_policy_document_is_read_for_the_admin_check(
    aws: AwsContainment, estate: AwsEstate
) -> None:
    document = aws.policy_document(
        PolicyDocumentRequest(account=SANDBOX_ACCOUNT, region=REGION, policy_arn=estate.admin_policy_arn)
    )

    assert document.document["Statement"][0]["Action"] == "*"


# --- bucket public-access block -------------------------------------------------------------------


def test_the_public_access_block_is_restored_and_its_undo_removes_it_again(
    moto: MotoSandbox, aws: AwsContainment, estate: AwsEstate
) -> None:
    moto.client("s3").delete_public_access_block(Bucket=estate.bucket)
    ref = BucketRef(region=REGION, bucket=estate.bucket)
    action = planned("bucket-public-access-block", estate.bucket, "s3.restore_public_access_block", ref)
    snapshot = aws.snapshot_public_access_block(action)

    assert aws.restore_public_access_block(snapshot).changed
    assert moto.public_access_block(estate.bucket) == dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
    )
    assert not aws.restore_public_access_block(snapshot).changed
    report = aws.verify_containment(ContainmentCheck(action=action, contained_at=datetime.now(UTC)))
    assert report.verdict == Verdict.HEALTHY

    assert aws.remove_public_access_block(snapshot).changed
    assert moto.public_access_block(estate.bucket) is None


# --- reads: baseline, dependents, verification ----------------------------------------------------


def test_a_keys_baseline_is_read_from_the_trail_log(
    moto: MotoSandbox, aws: AwsContainment, estate: AwsEstate
) -> None:
    key = estate.users[estate.deployer][0]
    actor = moto.user_actor(estate, estate.deployer, key)
    written = moto.seed_baseline(actor, [("ec2", "DescribeInstances"), ("s3", "GetObject")], ["10.0.1.15"])
    other = moto.user_actor(estate, estate.deployer, estate.users[estate.deployer][1])
    moto.seed_baseline(other, [("iam", "ListUsers")], ["192.0.2.1"])

    baseline = aws.credential_activity(
        CredentialQuery(
            account=SANDBOX_ACCOUNT,
            region=REGION,
            access_key_id=key,
            start=datetime.now(UTC) - timedelta(days=14),
            end=datetime.now(UTC) - timedelta(hours=1),
        )
    )

    assert baseline.calls == written
    assert baseline.source_ips == ["10.0.1.15"]
    assert baseline.event_names == ["DescribeInstances", "GetObject"]


def test_reading_the_trail_heartbeats_once_per_page(moto: MotoSandbox, estate: AwsEstate) -> None:
    key = estate.users[estate.deployer][0]
    actor = moto.user_actor(estate, estate.deployer, key)
    written = moto.seed_baseline(actor, [("ec2", "DescribeInstances")], ["10.0.1.15"])
    paging = moto.containment()  # a client of its own, so the page size below stays in this test
    paging.client("logs", REGION, SANDBOX_ACCOUNT).meta.events.register(
        "provide-client-params.logs.FilterLogEvents", _one_record_per_page
    )
    beats: list[object] = []
    worker = ActivityEnvironment()
    worker.on_heartbeat = beats.append

    baseline = worker.run(
        paging.credential_activity,
        CredentialQuery(
            account=SANDBOX_ACCOUNT,
            region=REGION,
            access_key_id=key,
            start=datetime.now(UTC) - timedelta(days=14),
        ),
    )

    assert baseline.calls == written
    assert written > 1 and len(beats) >= written


def _one_record_per_page(params: dict[str, object], **_: object) -> None:
    params["limit"] = 1


def test_a_roles_dependents_are_its_instances_and_functions(aws: AwsContainment, estate: AwsEstate) -> None:
    found = aws.role_dependents(
        RoleDependentsRequest(account=SANDBOX_ACCOUNT, region=REGION, role_arn=estate.role_arn)
    )

    assert len(found.dependents) == 4
    assert all(any(workload in d for d in found.dependents) for workload in estate.role_workloads)


def test_a_contained_key_holds_when_later_calls_with_it_are_refused(
    moto: MotoSandbox, aws: AwsContainment, estate: AwsEstate
) -> None:
    action = key_action(estate)
    attacker = moto.user_actor(estate, estate.deployer, estate.users[estate.deployer][0])
    aws.deactivate_access_key(aws.snapshot_access_key(action))
    contained_at = datetime.now(UTC) - timedelta(seconds=1)  # trail times are coarser than the clock
    refused = moto.call_as(attacker, "s3", "ListBuckets", source_ip="203.0.113.66")

    report = aws.verify_access_key_disabled(
        ContainmentCheck(action=action, contained_at=contained_at, grace_s=0.0)
    )

    assert refused["errorCode"] == "InvalidClientTokenId"
    assert report.verdict == Verdict.HEALTHY
    assert "1 refused" in report.reason


def test_a_contained_key_fails_verification_when_a_call_with_it_still_succeeds(
    moto: MotoSandbox, aws: AwsContainment, estate: AwsEstate
) -> None:
    action = key_action(estate)
    attacker = moto.user_actor(estate, estate.deployer, estate.users[estate.deployer][0])
    snapshot = aws.snapshot_access_key(action)
    aws.deactivate_access_key(snapshot)
    contained_at = datetime.now(UTC) - timedelta(seconds=1)
    aws.reactivate_access_key(snapshot)  # someone turns it back on for a moment
    moto.call_as(attacker, "s3", "ListBuckets", source_ip="203.0.113.66")
    aws.deactivate_access_key(snapshot)

    report = aws.verify_containment(ContainmentCheck(action=action, contained_at=contained_at, grace_s=0.0))

    assert report.verdict == Verdict.UNHEALTHY
    assert "1 call(s) signed with" in report.reason


def test_a_rule_that_reappears_fails_verification(
    moto: MotoSandbox, aws: AwsContainment, estate: AwsEstate
) -> None:
    action = ssh_action(estate, cidr="10.0.0.0/8")
    aws.revoke_ingress(aws.snapshot_ingress(action))
    assert aws.verify_ingress_revoked(
        ContainmentCheck(action=action, contained_at=datetime.now(UTC))
    ).verdict == (Verdict.HEALTHY)
    moto.client("ec2").authorize_security_group_ingress(
        GroupId=estate.groups["web"],
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}
        ],
    )

    report = aws.verify_ingress_revoked(ContainmentCheck(action=action, contained_at=datetime.now(UTC)))
    by_type = aws.verify_containment(ContainmentCheck(action=action, contained_at=datetime.now(UTC)))

    assert report.verdict == by_type.verdict == Verdict.UNHEALTHY
    assert "still present" in report.reason
