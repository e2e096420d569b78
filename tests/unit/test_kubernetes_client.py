"""The worker's Kubernetes client: where its configuration comes from, and how many connections it keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from suture.config import Settings
from suture.errors import ConfigError
from workers.providers import KUBE_CONNECTIONS, kubernetes_client

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: lab, cluster: {server: "https://10.0.0.1:6443"}}]
users: [{name: suture, user: {token: t0ken}}]
contexts: [{name: lab, context: {cluster: lab, user: suture}}]
current-context: lab
"""


def test_a_kubeconfig_gives_a_client_for_its_server_keeping_a_connection_per_activity(tmp_path: Path) -> None:
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    client = kubernetes_client(Settings(kubeconfig=str(tmp_path / "kubeconfig")))
    try:
        assert client.configuration.host == "https://10.0.0.1:6443"
        assert client.configuration.connection_pool_maxsize == KUBE_CONNECTIONS
    finally:
        client.close()


@pytest.mark.parametrize(
    "text",
    [
        "clusters: [not yaml",
        "- a list\n- not a mapping\n",
        "just a string",
        "current-context: lab\ncontexts: []\n",
        "apiVersion: v1\nkind: Config\nclusters: 7\ncontexts: [{name: x}]\ncurrent-context: x\n",
    ],
)
def test_a_kubeconfig_that_is_not_one_is_named_without_a_traceback(tmp_path: Path, text: str) -> None:
    (tmp_path / "kubeconfig").write_text(text)
    with pytest.raises(ConfigError, match="KUBECONFIG"):
        kubernetes_client(Settings(kubeconfig=str(tmp_path / "kubeconfig")))


def test_a_missing_kubeconfig_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KUBECONFIG"):
        kubernetes_client(Settings(kubeconfig=str(tmp_path / "nowhere")))
