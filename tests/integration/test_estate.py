"""The drill estate and its Kubernetes API: rollout history as a cluster keeps it, services that react.

Changes are made the way suture and people make them, with the official client
over HTTP; the estate must notice them there.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.client import ApiClient, ApiException, AppsV1Api, CoreV1Api

from sandbox.estate import REVISION, REVISION_HISTORY, TEMPLATE_HASH, Estate
from sandbox.kube import KubeEmulator
from sandbox.model import Behaviour, ServiceSpec

pytestmark = pytest.mark.integration

NAMESPACE, SERVICE = "shop", "checkout"
V1, V2, V3 = (f"registry.example/checkout:{version}" for version in ("v1", "v2", "v3"))
FAST, SLOW = Behaviour(latency_p99_s=0.12), Behaviour(latency_p99_s=0.9, error_ratio=0.02)
LEAKY = Behaviour(latency_p99_s=0.12, memory_growth_bytes_per_s=3e6, base_memory_bytes=200e6)


def checkout(history: list[str] | None = None, **fields: Any) -> ServiceSpec:
    return ServiceSpec(NAMESPACE, SERVICE, {V1: FAST, V2: SLOW, V3: FAST}, history or [V1, V2], **fields)


async def replicasets(api: ApiClient) -> list[Any]:
    listing = await asyncio.to_thread(AppsV1Api(api).list_namespaced_replica_set, NAMESPACE)
    return sorted(listing.items, key=lambda replicaset: int(replicaset.metadata.annotations[REVISION]))


async def pods(api: ApiClient) -> list[Any]:
    return (await asyncio.to_thread(CoreV1Api(api).list_namespaced_pod, NAMESPACE)).items


async def patch_deployment(api: ApiClient, body: Any) -> None:
    await asyncio.to_thread(AppsV1Api(api).patch_namespaced_deployment, SERVICE, NAMESPACE, body)


def roll_back_to(image: str) -> list[dict[str, Any]]:
    """What a person's rollback amounts to on the wire: one JSON Patch of the image."""
    return [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}]


async def test_a_new_service_has_one_replicaset_per_version_owned_by_its_deployment(
    estate: Estate, kube_api: ApiClient
) -> None:
    await estate.add_service(checkout([V1, V2, V3], replicas=3))

    deployment = await asyncio.to_thread(AppsV1Api(kube_api).read_namespaced_deployment, SERVICE, NAMESPACE)
    history = await replicasets(kube_api)
    running = await pods(kube_api)

    assert [rs.spec.template.spec.containers[0].image for rs in history] == [V1, V2, V3]
    assert [rs.metadata.annotations[REVISION] for rs in history] == ["1", "2", "3"]
    assert [rs.spec.replicas for rs in history] == [0, 0, 3]
    assert all(rs.metadata.owner_references[0].uid == deployment.metadata.uid for rs in history)
    assert all(rs.metadata.name == f"{SERVICE}-{rs.metadata.labels[TEMPLATE_HASH]}" for rs in history)
    assert deployment.metadata.annotations[REVISION] == "3"
    assert deployment.status.ready_replicas == 3
    assert {pod.metadata.owner_references[0].name for pod in running} == {history[-1].metadata.name}
    assert len(running) == 3 and estate.replicas(NAMESPACE, SERVICE) == 3


async def test_the_current_version_rolled_out_as_long_ago_as_the_drill_says(
    estate: Estate, kube_api: ApiClient
) -> None:
    await estate.add_service(
        checkout(), rolled_out_ago=timedelta(minutes=3), history_spacing=timedelta(hours=1)
    )
    now = datetime.now(UTC)

    previous, current = await replicasets(kube_api)
    started = {pod.status.start_time for pod in await pods(kube_api)}

    assert abs(now - timedelta(minutes=3) - current.metadata.creation_timestamp) < timedelta(seconds=5)
    assert abs(now - timedelta(minutes=63) - previous.metadata.creation_timestamp) < timedelta(seconds=5)
    assert started == {current.metadata.creation_timestamp}


async def test_what_a_service_reports_follows_the_image_after_a_rollback(
    estate: Estate, kube_api: ApiClient
) -> None:
    await estate.add_service(checkout())
    slow = estate.observe(NAMESPACE, SERVICE)

    await patch_deployment(kube_api, roll_back_to(V1))
    await estate.reconcile()
    fast = estate.observe(NAMESPACE, SERVICE)

    assert slow is not None and (slow.image, slow.latency_p99_s, slow.error_ratio) == (V2, 0.9, 0.02)
    assert fast is not None and (fast.image, fast.latency_p99_s, fast.error_ratio) == (V1, 0.12, 0.0)


async def test_rolling_back_reuses_the_old_replicaset_and_bumps_its_revision(
    estate: Estate, kube_api: ApiClient
) -> None:
    await estate.add_service(checkout([V1, V2, V3]))
    before = await replicasets(kube_api)

    await patch_deployment(kube_api, roll_back_to(V2))
    await estate.reconcile()
    after = await replicasets(kube_api)

    reused = after[-1]
    assert len(after) == len(before)
    assert reused.metadata.name == before[1].metadata.name
    assert reused.metadata.annotations[REVISION] == "4"
    assert reused.metadata.annotations[REVISION_HISTORY] == "2"
    assert [rs.spec.replicas for rs in after] == [0, 0, 2]


async def test_a_restart_starts_fresh_pods_and_memory_falls_back_to_its_base(
    estate: Estate, kube_api: ApiClient
) -> None:
    await estate.add_service(
        ServiceSpec(NAMESPACE, SERVICE, {V1: LEAKY}, [V1]), rolled_out_ago=timedelta(minutes=10)
    )
    leaking = estate.observe(NAMESPACE, SERVICE)
    old_pods = {pod.metadata.name for pod in await pods(kube_api)}

    restart = {"kubectl.kubernetes.io/restartedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    await patch_deployment(kube_api, {"spec": {"template": {"metadata": {"annotations": restart}}}})
    await estate.reconcile()
    fresh = estate.observe(NAMESPACE, SERVICE)

    assert leaking is not None and leaking.memory_bytes == pytest.approx(200e6 + 3e6 * 600, rel=0.01)
    assert fresh is not None and fresh.memory_bytes < 210e6 and fresh.image == V1
    assert old_pods.isdisjoint(pod.metadata.name for pod in await pods(kube_api))


async def test_a_failing_dependency_keeps_latency_and_errors_high_whatever_the_version(
    estate: Estate, kube_api: ApiClient
) -> None:
    await estate.add_service(checkout(dependency_healthy=False))

    await patch_deployment(kube_api, roll_back_to(V1))
    await estate.reconcile()
    degraded = estate.observe(NAMESPACE, SERVICE)
    estate.set_dependency(NAMESPACE, SERVICE, healthy=True)
    recovered = estate.observe(NAMESPACE, SERVICE)

    assert degraded is not None and degraded.image == V1
    assert degraded.latency_p99_s >= 2.0 and degraded.error_ratio >= 0.3
    assert recovered is not None and recovered.latency_p99_s == 0.12 and recovered.error_ratio == 0.0


async def test_load_above_capacity_raises_latency_and_more_replicas_relieve_it(
    estate: Estate, kube_api: ApiClient
) -> None:
    await estate.add_service(checkout([V1], replicas=2, load_rps=100.0, capacity_rps_per_replica=40.0))
    saturated = estate.observe(NAMESPACE, SERVICE)

    scale = AppsV1Api(kube_api).patch_namespaced_deployment_scale
    await asyncio.to_thread(scale, SERVICE, NAMESPACE, {"spec": {"replicas": 4}})
    await estate.reconcile()
    relieved = estate.observe(NAMESPACE, SERVICE)

    assert saturated is not None and saturated.saturation_ratio == pytest.approx(1.25)
    assert saturated.latency_p99_s > 0.12
    assert relieved is not None and relieved.saturation_ratio == pytest.approx(0.625)
    assert relieved.latency_p99_s == 0.12 and relieved.replicas == 4
    assert len(await pods(kube_api)) == 4


async def test_the_reconcile_loop_notices_a_new_rollout_on_its_own(estate: Estate) -> None:
    await estate.add_service(checkout())

    async with estate:
        await estate.roll_out(NAMESPACE, SERVICE, V3)
        deadline = time.monotonic() + 5
        while estate.current_image(NAMESPACE, SERVICE) != V3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    assert estate.current_image(NAMESPACE, SERVICE) == V3


async def test_a_deleted_deployment_reports_nothing(estate: Estate, kube_api: ApiClient) -> None:
    await estate.add_service(checkout())

    await asyncio.to_thread(AppsV1Api(kube_api).delete_namespaced_deployment, SERVICE, NAMESPACE)
    await estate.reconcile()

    assert estate.observe(NAMESPACE, SERVICE) is None
    assert estate.observe(NAMESPACE, "no-such-service") is None


# --- the API server the estate runs on ----------------------------------------------------


async def test_a_replace_with_a_stale_resource_version_is_refused(
    estate: Estate, kube_api: ApiClient
) -> None:
    await estate.add_service(checkout())
    apps = AppsV1Api(kube_api)
    stale = await asyncio.to_thread(apps.read_namespaced_deployment, SERVICE, NAMESPACE)
    await patch_deployment(kube_api, roll_back_to(V1))

    with pytest.raises(ApiException) as refused:
        await asyncio.to_thread(apps.replace_namespaced_deployment, SERVICE, NAMESPACE, stale)

    assert refused.value.status == 409


async def test_the_scale_subresource_is_a_scale_that_changes_only_replicas(
    estate: Estate, kube_api: ApiClient
) -> None:
    await estate.add_service(checkout(replicas=2))
    apps = AppsV1Api(kube_api)

    scale = await asyncio.to_thread(apps.read_namespaced_deployment_scale, SERVICE, NAMESPACE)
    body = {"metadata": {"labels": {"sneaked": "in"}}, "spec": {"replicas": 5}}
    await asyncio.to_thread(apps.patch_namespaced_deployment_scale, SERVICE, NAMESPACE, body)
    deployment = await asyncio.to_thread(apps.read_namespaced_deployment, SERVICE, NAMESPACE)

    assert (scale.kind, scale.spec.replicas, scale.status.selector) == ("Scale", 2, f"app={SERVICE}")
    assert deployment.spec.replicas == 5 and "sneaked" not in deployment.metadata.labels


async def test_the_emulator_also_serves_on_the_running_event_loop() -> None:
    async with KubeEmulator() as kube:
        with kube.api_client() as api:
            estate = Estate(api)
            await estate.add_service(checkout())
            listing = await asyncio.to_thread(
                AppsV1Api(api).list_namespaced_replica_set, NAMESPACE, label_selector=f"app={SERVICE}"
            )
            elsewhere = await asyncio.to_thread(
                AppsV1Api(api).list_namespaced_replica_set, NAMESPACE, label_selector="app=elsewhere"
            )

    assert len(listing.items) == 2 and elsewhere.items == []
