"""suture's Kubernetes activities against the sandbox API server, over HTTP, with the official client.

The estate plays the Deployment controller, so every action is checked by what
it leads to: the image that runs, the replicas, the rollout history.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from kubernetes.client import ApiClient, AppsV1Api, Configuration
from temporalio.exceptions import ApplicationError

from activities.kubernetes import LAST_ACTION, RESTARTED_AT, KubernetesActions
from sandbox.estate import Estate
from sandbox.kube import KubeEmulator
from sandbox.model import Behaviour, ServiceSpec
from suture.models import Mode, PlannedAction, Snapshot, Target

pytestmark = pytest.mark.integration

NAMESPACE, SERVICE = "shop", "checkout"
TARGET = Target(kind="Deployment", scope=NAMESPACE, name=SERVICE)
V1, V2, V3 = (f"registry.example/checkout:{version}" for version in ("v1", "v2", "v3"))
FAST, SLOW = Behaviour(latency_p99_s=0.12), Behaviour(latency_p99_s=0.9)
LEAKY = Behaviour(latency_p99_s=0.12, memory_growth_bytes_per_s=3e6)

Result = TypeVar("Result")


def checkout(history: list[str] | None = None, **fields: Any) -> ServiceSpec:
    return ServiceSpec(NAMESPACE, SERVICE, {V1: FAST, V2: SLOW, V3: FAST}, history or [V1, V2], **fields)


def planned(action_type: str, incident: str = "fp-1", **params: Any) -> PlannedAction:
    return PlannedAction(
        type=action_type,
        target=TARGET,
        params=params,
        mode=Mode.AUTONOMOUS,
        idempotency_key=f"{incident}:{action_type}:{TARGET}",
    )


async def run(activity: Callable[[Any], Result], argument: Any) -> Result:
    """Call an activity as the worker does: on a thread, away from the event loop."""
    return await asyncio.to_thread(activity, argument)


async def act(actions: KubernetesActions, action: PlannedAction, estate: Estate) -> tuple[Snapshot, Any]:
    """Prepare and carry out one action, then let the controller react."""
    snapshot = await run(actions.snapshot_deployment, action)
    do = {
        "k8s.rollback": actions.rollback_deployment,
        "k8s.restart": actions.restart_deployment,
        "k8s.scale": actions.scale_deployment,
    }[action.type]
    outcome = await run(do, snapshot)
    await estate.reconcile()
    return snapshot, outcome


def deployment(api: ApiClient) -> Any:
    return AppsV1Api(api).read_namespaced_deployment(SERVICE, NAMESPACE)


async def test_rollback_runs_the_previous_image_and_the_same_key_never_rolls_back_twice(
    estate: Estate, kubernetes_actions: KubernetesActions
) -> None:
    await estate.add_service(checkout())

    snapshot, first = await act(kubernetes_actions, planned("k8s.rollback"), estate)
    retry = await run(kubernetes_actions.rollback_deployment, snapshot)
    _, duplicate_run = await act(kubernetes_actions, planned("k8s.rollback"), estate)

    assert first.changed and "from revision 2" in first.detail
    assert not retry.changed and not duplicate_run.changed
    assert "already applied" in duplicate_run.detail
    assert estate.current_image(NAMESPACE, SERVICE) == V1
    assert first.evidence[0].value == V1


async def test_a_retry_after_a_crash_still_says_what_the_rollback_changed(
    estate: Estate, kubernetes_actions: KubernetesActions
) -> None:
    await estate.add_service(checkout())
    snapshot, first = await act(kubernetes_actions, planned("k8s.rollback"), estate)

    retry = await run(kubernetes_actions.rollback_deployment, snapshot)

    assert not retry.changed
    assert retry.detail.startswith(first.detail)
    assert f"from revision 2 ({V2}) to the template of revision 1 ({V1})" in retry.detail
    assert "applied by an earlier attempt" in retry.detail


async def test_a_retry_after_a_crash_still_says_what_the_scale_out_changed(
    estate: Estate, kubernetes_actions: KubernetesActions
) -> None:
    await estate.add_service(checkout(replicas=2))
    snapshot, _ = await act(kubernetes_actions, planned("k8s.scale", by=2, max_replicas=6), estate)

    retry = await run(kubernetes_actions.scale_deployment, snapshot)

    assert not retry.changed
    assert "from 2 to 4 replicas (applied by an earlier attempt" in retry.detail


async def test_restore_after_a_rollback_brings_the_newer_version_back(
    estate: Estate, kubernetes_actions: KubernetesActions
) -> None:
    await estate.add_service(checkout())
    snapshot, _ = await act(kubernetes_actions, planned("k8s.rollback"), estate)

    restored = await run(kubernetes_actions.restore_deployment, snapshot)
    await estate.reconcile()
    again = await run(kubernetes_actions.restore_deployment, snapshot)

    assert restored.changed and not again.changed
    assert estate.current_image(NAMESPACE, SERVICE) == V2
    assert estate.observe(NAMESPACE, SERVICE).latency_p99_s == pytest.approx(SLOW.latency_p99_s)  # type: ignore[union-attr]


async def test_a_rollback_ends_with_exactly_the_previous_template_not_a_merge_of_two(
    estate: Estate, kubernetes_actions: KubernetesActions, kube_api: ApiClient
) -> None:
    await estate.add_service(checkout())
    await act(kubernetes_actions, planned("k8s.restart", incident="fp-0"), estate)

    await act(kubernetes_actions, planned("k8s.rollback"), estate)

    template = kube_api.sanitize_for_serialization(deployment(kube_api).spec.template)
    assert RESTARTED_AT not in (template["metadata"].get("annotations") or {})
    assert template["spec"]["containers"][0]["image"] == V2
    history = await run(kubernetes_actions.rollout_history, TARGET)
    assert [rollout.revision for rollout in history.rollouts] == [4, 3, 1]


async def test_a_restart_sets_restarted_at_and_fresh_pods_bring_memory_down(
    estate: Estate, kubernetes_actions: KubernetesActions, kube_api: ApiClient
) -> None:
    spec = ServiceSpec(NAMESPACE, SERVICE, {V1: LEAKY}, [V1])
    await estate.add_service(spec, rolled_out_ago=timedelta(minutes=10))
    leaking = estate.observe(NAMESPACE, SERVICE)

    snapshot, outcome = await act(kubernetes_actions, planned("k8s.restart"), estate)
    retry = await run(kubernetes_actions.restart_deployment, snapshot)

    annotations = deployment(kube_api).spec.template.metadata.annotations
    assert outcome.changed and not retry.changed
    assert datetime.fromisoformat(annotations[RESTARTED_AT]) > datetime.now(UTC) - timedelta(minutes=1)
    assert leaking is not None and leaking.memory_bytes > 1.5e9
    assert estate.observe(NAMESPACE, SERVICE).memory_bytes < 0.5e9  # type: ignore[union-attr]
    assert estate.current_image(NAMESPACE, SERVICE) == V1


async def test_scale_adds_replicas_up_to_max_replicas_and_restore_puts_them_back(
    estate: Estate, kubernetes_actions: KubernetesActions
) -> None:
    await estate.add_service(checkout(replicas=2))

    snapshot, scaled = await act(kubernetes_actions, planned("k8s.scale", by=3, max_replicas=4), estate)
    retry = await run(kubernetes_actions.scale_deployment, snapshot)
    assert scaled.changed and not retry.changed
    assert estate.replicas(NAMESPACE, SERVICE) == 4

    restored = await run(kubernetes_actions.restore_deployment, snapshot)
    await estate.reconcile()
    assert restored.changed
    assert estate.replicas(NAMESPACE, SERVICE) == 2


async def test_scale_at_the_cap_changes_nothing(
    estate: Estate, kubernetes_actions: KubernetesActions
) -> None:
    await estate.add_service(checkout(replicas=6))

    _, outcome = await act(kubernetes_actions, planned("k8s.scale", by=2, max_replicas=6), estate)

    assert not outcome.changed and "cap" in outcome.detail
    assert estate.replicas(NAMESPACE, SERVICE) == 6


async def test_rollout_history_lists_revisions_newest_first_with_the_rollback_bumped_revision(
    estate: Estate, kubernetes_actions: KubernetesActions
) -> None:
    await estate.add_service(checkout([V1, V2, V3]), rolled_out_ago=timedelta(minutes=3))
    before = await run(kubernetes_actions.rollout_history, TARGET)

    await act(kubernetes_actions, planned("k8s.rollback"), estate)
    after = await run(kubernetes_actions.rollout_history, TARGET)

    assert [(r.revision, r.images) for r in before.rollouts] == [(3, [V3]), (2, [V2]), (1, [V1])]
    assert datetime.now(UTC) - before.rollouts[0].created_at < timedelta(minutes=4)
    assert [(r.revision, r.images) for r in after.rollouts] == [(4, [V2]), (3, [V3]), (1, [V1])]
    assert after.current_revision == 4
    assert after.rollouts[0].replicaset == before.rollouts[1].replicaset


async def test_a_missing_deployment_is_a_non_retryable_target_not_found(
    kubernetes_actions: KubernetesActions,
) -> None:
    for activity, argument in [
        (kubernetes_actions.rollout_history, TARGET),
        (kubernetes_actions.snapshot_deployment, planned("k8s.rollback")),
        (kubernetes_actions.rollback_deployment, Snapshot(action=planned("k8s.rollback"), state={})),
    ]:
        with pytest.raises(ApplicationError) as raised:
            await run(activity, argument)
        assert raised.value.type == "TargetNotFound" and raised.value.non_retryable


async def test_restoring_a_deployment_that_is_gone_counts_as_done(
    estate: Estate, kubernetes_actions: KubernetesActions, kube_api: ApiClient
) -> None:
    await estate.add_service(checkout())
    snapshot, _ = await act(kubernetes_actions, planned("k8s.rollback"), estate)
    AppsV1Api(kube_api).delete_namespaced_deployment(SERVICE, NAMESPACE)

    outcome = await run(kubernetes_actions.restore_deployment, snapshot)

    assert not outcome.changed and "gone" in outcome.detail


async def test_a_rollback_with_nothing_to_roll_back_to_is_a_non_retryable_action_error(
    estate: Estate, kubernetes_actions: KubernetesActions
) -> None:
    await estate.add_service(checkout([V1]))
    snapshot = await run(kubernetes_actions.snapshot_deployment, planned("k8s.rollback"))

    with pytest.raises(ApplicationError) as raised:
        await run(kubernetes_actions.rollback_deployment, snapshot)

    assert raised.value.type == "ActionError" and raised.value.non_retryable
    assert "no previous revision" in str(raised.value)


async def test_restore_does_not_overwrite_a_release_made_after_the_rollback(
    estate: Estate, kubernetes_actions: KubernetesActions
) -> None:
    await estate.add_service(checkout())
    snapshot, _ = await act(kubernetes_actions, planned("k8s.rollback"), estate)
    await estate.roll_out(NAMESPACE, SERVICE, V3)
    await estate.reconcile()

    with pytest.raises(ApplicationError) as raised:
        await run(kubernetes_actions.restore_deployment, snapshot)

    assert raised.value.type == "ChangedSinceAction" and raised.value.non_retryable
    assert estate.current_image(NAMESPACE, SERVICE) == V3


async def test_the_key_is_written_in_the_same_request_as_the_rollback(
    estate: Estate, kubernetes_actions: KubernetesActions, kube: KubeEmulator
) -> None:
    await estate.add_service(checkout())
    snapshot = await run(kubernetes_actions.snapshot_deployment, planned("k8s.rollback"))

    await run(kubernetes_actions.rollback_deployment, snapshot)

    patches = [request.data for request in list(kube.server) if request.method == "PATCH"]
    changed_template = [body for body in patches if "/spec/template" in str(body)]
    assert len(changed_template) == 1
    assert LAST_ACTION.replace("/", "~1") in str(changed_template[0])


@pytest.mark.parametrize(
    ("status", "retried"), [(403, False), (422, False), (409, True), (429, True), (503, True)]
)
async def test_only_api_answers_a_retry_can_fix_are_retried(
    kubernetes_actions: KubernetesActions, kube: KubeEmulator, status: int, retried: bool
) -> None:
    kube.server[f"get /apis/apps/v1/namespaces/{NAMESPACE}/deployments/{SERVICE}"] << status

    with pytest.raises(ApplicationError) as raised:
        await run(kubernetes_actions.rollout_history, TARGET)

    assert raised.value.non_retryable is not retried


async def test_a_refused_request_names_the_rules_the_action_is_declared_with(
    estate: Estate, kubernetes_actions: KubernetesActions, kube: KubeEmulator
) -> None:
    await estate.add_service(checkout())
    snapshot = await run(kubernetes_actions.snapshot_deployment, planned("k8s.rollback"))
    kube.server[f"patch /apis/apps/v1/namespaces/{NAMESPACE}/deployments/{SERVICE}"] << 403

    with pytest.raises(ApplicationError) as raised:
        await run(kubernetes_actions.rollback_deployment, snapshot)

    assert raised.value.type == "PermissionDenied" and raised.value.non_retryable
    assert "apps/deployments: get, patch" in str(raised.value)


async def test_an_unreachable_api_is_retried() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    configuration = Configuration(host=f"http://127.0.0.1:{port}")
    configuration.retries = 0
    with ApiClient(configuration) as api, pytest.raises(ApplicationError) as raised:
        await run(KubernetesActions(api).rollout_history, TARGET)

    assert raised.value.type == "KubernetesUnreachable" and not raised.value.non_retryable
