"""The action registry walked entry by entry: every action complete, every reference real.

An action is declared once, in ``policies/actions``; these tests fail on one that
lacks a part, names an activity the worker does not register, or whose example is
not a policy suture would load.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError
from kubernetes.client import ApiClient, Configuration, V1ClusterRole
from temporalio import activity
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from activities.aws import AwsContainment
from policies.actions import (
    ActionSpec,
    NoParams,
    Permissions,
    UndoState,
    activity_declaration,
    activity_name,
    declared_activities,
    over_the_cap,
    registered_actions,
)
from policies.actions.permissions import cluster_role, cluster_role_yaml, iam_policy
from policies.loading import default_policy_dir, load_policy_file
from policies.targets import AccessKeyRef
from suture.config import Settings
from suture.errors import (
    NON_RETRYABLE,
    ActionError,
    AwsUnavailable,
    ChangedSinceAction,
    PermissionDenied,
    PolicyError,
    TargetNotFound,
    as_failure,
)
from suture.models import Loop, Mode, PlannedAction, Target
from suture.store import AuditStore
from workers.providers import activity_providers
from workers.worker import worker_activities

STEPS = ("prepare", "do", "undo", "verify")


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Callable[..., Any]]:
    """The worker's activities by name, built as the worker builds them, with clients that go nowhere."""
    state = tmp_path_factory.mktemp("worker")
    settings = Settings(db_url=f"sqlite:///{state / 'audit.db'}", prometheus_url="http://127.0.0.1:9")
    aws = AwsContainment(boto3.Session(region_name="us-east-1"), endpoint_url="http://127.0.0.1:9")
    kube = ApiClient(Configuration(host="http://127.0.0.1:9"))
    providers = activity_providers(settings, kube_api=kube, aws=aws, store=AuditStore.create(settings.db_url))
    return {activity_name(method): method for method in worker_activities(None, providers)}  # type: ignore[arg-type]


def incomplete(spec: ActionSpec) -> list[str]:
    """What a registered action lacks; empty when every part of its declaration is there."""
    problems = [
        f"{spec.name}: no {part}"
        for part in ("summary", "blast_radius", "example", "permissions", *STEPS)
        if not getattr(spec, part)
    ]
    if not isinstance(spec.loop, Loop):
        problems.append(f"{spec.name}: no loop")
    if spec.params.model_config.get("extra") != "forbid":
        problems.append(f"{spec.name}: its params accept unknown keys")
    if not (inspect.isclass(spec.state) and issubclass(spec.state, UndoState)):
        problems.append(f"{spec.name}: its undo state is not a typed model")
    if not isinstance(spec.max_targets, int) or spec.max_targets < 1:
        problems.append(f"{spec.name}: max_targets must be a number of at least 1")
    return problems


def test_the_registry_is_not_empty_and_every_action_is_complete() -> None:
    assert registered_actions()
    assert [problem for spec in registered_actions() for problem in incomplete(spec)] == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"undo": None}, "no undo"),
        ({"verify": None}, "no verify"),
        ({"permissions": Permissions()}, "no permissions"),
        ({"blast_radius": ""}, "no blast_radius"),
        ({"max_targets": 0}, "max_targets"),
        ({"state": dict}, "typed model"),
    ],
)
def test_the_registry_check_flags_an_incomplete_action(change: dict[str, object], expected: str) -> None:
    spec = next(spec for spec in registered_actions() if spec.name == "k8s.scale")
    broken = ActionSpec(**{**spec.__dict__, **change})
    assert any(expected in problem for problem in incomplete(broken))


def test_action_params_that_accept_anything_are_flagged() -> None:
    class LooseParams(NoParams):
        model_config = {"extra": "allow"}

    spec = next(spec for spec in registered_actions() if spec.name == "k8s.rollback")
    assert any(
        "unknown keys" in p for p in incomplete(ActionSpec(**{**spec.__dict__, "params": LooseParams}))
    )


@pytest.mark.parametrize("spec", registered_actions(), ids=lambda spec: spec.name)
def test_every_step_of_an_action_is_an_activity_the_worker_registers_with_the_same_types(
    spec: ActionSpec, registered: dict[str, Callable[..., Any]]
) -> None:
    for step, name in spec.activities().items():
        assert name in registered, f"{spec.name}.{step} names {name!r}, which the worker does not register"
        assert _types(registered[name]) == _types(getattr(spec, step)), f"{spec.name}.{step}: types differ"


def test_every_declared_activity_is_registered_by_the_worker(
    registered: dict[str, Callable[..., Any]],
) -> None:
    missing = [declared.name for declared in declared_activities() if declared.name not in registered]
    assert missing == []


def test_paging_reads_heartbeat_and_every_declared_activity_has_its_own_time_limit() -> None:
    assert activity_declaration("aws.credential_activity").heartbeat is not None
    limits = {declared.start_to_close for declared in declared_activities()}
    assert len(limits) > 1


@pytest.mark.parametrize("spec", registered_actions(), ids=lambda spec: spec.name)
def test_every_example_is_a_policy_suture_loads(spec: ActionSpec, tmp_path: Path) -> None:
    policy = _default_policy_for(spec)
    policy["actions"] = yaml.safe_load(spec.example)["actions"]
    path = tmp_path / "example.yaml"
    path.write_text(yaml.safe_dump({"policies": [policy]}, sort_keys=False))

    [loaded] = load_policy_file(path)

    assert spec.name in [step.type for step in loaded.actions]


@pytest.mark.parametrize("spec", registered_actions(), ids=lambda spec: spec.name)
def test_params_refuse_unknown_keys(spec: ActionSpec) -> None:
    with pytest.raises(ValueError, match="extra"):
        spec.params.model_validate({"no_such_setting": 1})


def _types(activity_callable: Callable[..., Any]) -> tuple[Any, Any]:
    definition = activity._Definition.must_from_callable(activity_callable)
    return tuple(definition.arg_types or ()), definition.ret_type


def _default_policy_for(spec: ActionSpec) -> dict[str, Any]:
    """A shipped default policy of the action's loop, preferably one that already uses it."""
    found: list[dict[str, Any]] = []
    for path in sorted(default_policy_dir().glob("*.yaml")):
        found += yaml.safe_load(path.read_text())["policies"]
    ours = [policy for policy in found if policy.get("loop", "reliability") == spec.loop]
    using = [policy for policy in ours if spec.name in [a.get("type") for a in policy.get("actions", [])]]
    return (using or ours)[0]


# --- the blast-radius cap ---------------------------------------------------------------------


def planned(action_type: str, name: str) -> PlannedAction:
    return PlannedAction(
        type=action_type,
        target=Target(kind="deployment", scope="shop", name=name),
        mode=Mode.AUTONOMOUS,
        idempotency_key=f"fp:{action_type}:{name}",
    )


def test_a_plan_within_every_cap_passes() -> None:
    assert over_the_cap([planned("k8s.rollback", "checkout")]) is None


def test_a_plan_over_an_actions_max_targets_is_refused_with_the_cap_named() -> None:
    reason = over_the_cap([planned("k8s.rollback", "checkout"), planned("k8s.rollback", "payments")])

    assert reason is not None and "k8s.rollback" in reason and "at most 1" in reason


# --- least privilege ---------------------------------------------------------------------------


def test_the_iam_policy_is_json_that_grants_every_actions_permissions() -> None:
    document = json.loads(json.dumps(iam_policy()))
    granted = {action for statement in document["Statement"] for action in statement["Action"]}

    assert document["Version"] == "2012-10-17"
    assert "iam:UpdateAccessKey" in granted
    for spec in registered_actions():
        assert set(spec.permissions.iam) <= granted, spec.name
    assert {"logs:FilterLogEvents", "iam:GetPolicy"} <= granted
    assert all(statement["Effect"] == "Allow" for statement in document["Statement"])


def test_the_cluster_role_loads_as_a_kubernetes_object_and_covers_every_actions_rules() -> None:
    manifest = yaml.safe_load(cluster_role_yaml())
    role = ApiClient().deserialize(json.dumps(manifest), "V1ClusterRole", "application/json")

    assert isinstance(role, V1ClusterRole) and role.metadata.name == "suture"
    granted = {
        (group, resource, verb)
        for rule in role.rules
        for group in rule.api_groups
        for resource in rule.resources
        for verb in rule.verbs
    }
    for spec in registered_actions():
        for rule in spec.permissions.rbac:
            needed = {(g, r, v) for g in rule.api_groups for r in rule.resources for v in rule.verbs}
            assert needed <= granted, spec.name
    assert ("apps", "replicasets", "list") in granted


def test_the_generated_policies_are_the_same_every_time() -> None:
    assert iam_policy() == iam_policy()
    assert cluster_role_yaml() == cluster_role_yaml()
    assert [rule["resources"] for rule in cluster_role()["rules"]] == sorted(
        rule["resources"] for rule in cluster_role()["rules"]
    )


# --- the failure taxonomy ---------------------------------------------------------------------


def test_a_failure_carries_its_type_and_whether_to_retry_from_one_place() -> None:
    permanent = TargetNotFound.failure("Deployment shop/checkout not found")
    transient = AwsUnavailable.failure("AWS answered Throttling; retrying")

    assert (permanent.type, permanent.non_retryable) == ("TargetNotFound", True)
    assert (transient.type, transient.non_retryable) == ("AwsUnavailable", False)
    assert {"TargetNotFound", "ActionError", "PermissionDenied", "ChangedSinceAction", "PolicyError"} <= set(
        NON_RETRYABLE
    )
    assert "AwsUnavailable" not in NON_RETRYABLE


def test_a_failure_is_recognised_by_its_kind_through_an_activity_error() -> None:
    seen = ActivityError(
        "activity failed",
        scheduled_event_id=1,
        started_event_id=2,
        identity="worker",
        activity_type="k8s.restore_deployment",
        activity_id="1",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    seen.__cause__ = ChangedSinceAction.failure("shop/checkout changed since suture's k8s.rollback")

    assert ChangedSinceAction.matches(seen) and ActionError.matches(seen)
    assert not TargetNotFound.matches(seen)


def test_an_error_raised_by_pure_code_becomes_the_failure_of_its_kind() -> None:
    failure = as_failure(PolicyError("unknown key 'mdoe'", "policies/x.yaml:3"))

    assert isinstance(failure, ApplicationError)
    assert failure.type == "PolicyError" and failure.non_retryable
    assert "policies/x.yaml:3" in failure.message


class _RefusingIam:
    """An IAM client whose every read is refused, as for an identity without the permission."""

    def list_access_keys(self, **_: Any) -> Any:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "ListAccessKeys")


def test_a_refused_aws_call_names_the_permission_the_action_declares() -> None:
    aws = AwsContainment(boto3.Session(region_name="us-east-1"), clients=lambda *_: _RefusingIam())
    ref = AccessKeyRef(region="us-east-1", user_name="ci-deployer", access_key_id="AKIAEXAMPLE")
    action = PlannedAction(
        type="iam.deactivate_access_key",
        target=Target(kind="access-key", scope="123456789012", name="ci-deployer/AKIAEXAMPLE"),
        params={"target": ref.model_dump()},
        mode=Mode.AUTONOMOUS,
        idempotency_key="event-1:iam.deactivate_access_key:ci-deployer/AKIAEXAMPLE",
    )

    with pytest.raises(ApplicationError) as raised:
        aws.snapshot_access_key(action)

    assert raised.value.type == PermissionDenied.__name__ and raised.value.non_retryable
    assert "grant the worker's AWS identity iam:ListAccessKeys " in raised.value.message
