"""Fixtures for tests against the sandbox Kubernetes API.

The emulator runs on a thread of its own, as a cluster runs apart from the worker:
the tests, like suture's activities, reach it only over HTTP with the official
client, and a blocking call made from a test can never stall the server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from kubernetes.client import ApiClient

from activities.kubernetes import KubernetesActions
from sandbox.estate import Estate
from sandbox.kube import KubeEmulator


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    with KubeEmulator() as emulator:
        yield emulator


@pytest.fixture
def kube_api(kube: KubeEmulator) -> Iterator[ApiClient]:
    with kube.api_client() as api:
        yield api


@pytest.fixture
async def estate(kube_api: ApiClient) -> AsyncIterator[Estate]:
    """An estate whose controller runs only when a test calls ``reconcile()``, for exact assertions."""
    yield Estate(kube_api)


@pytest.fixture
def kubernetes_actions(kube_api: ApiClient) -> KubernetesActions:
    return KubernetesActions(kube_api)
