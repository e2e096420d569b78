"""The Kubernetes manifests and the IAM policy ship what the code generates, and validate.

The base and the example overlay are rendered with ``kubectl kustomize`` when kubectl
is installed, else by :func:`render` below, which applies the part of kustomize these
manifests use (resources, namespace, images, strategic-merge patches); where both
exist, a test checks that they agree. Every rendered object is validated against the
Kubernetes OpenAPI schemas shipped by ``kubernetes-validate`` (offline, strict).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from workers.cli import app

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
BASE, OVERLAY = KUBE / "base", KUBE / "overlays" / "example"
KUBERNETES_VERSION = "1.33.0"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}

Obj = dict[str, Any]


def render(folder: Path) -> list[Obj]:
    """The objects ``kubectl kustomize folder`` prints, for the kustomize features used here."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    objects: list[Obj] = []
    for resource in spec.get("resources", []):
        path = (folder / resource).resolve()
        if path.is_dir():
            objects += render(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for patch in spec.get("patches", []):
        change = yaml.safe_load((folder / patch["path"]).read_text())
        target = next(o for o in objects if _key(o)[:2] == _key(change)[:2])
        _merge(target, change)
    if "namespace" in spec:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = spec["namespace"]
    for image in spec.get("images", []):
        for container in _containers(objects):
            if container["image"].split(":")[0] == image["name"]:
                container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return objects


def _key(obj: Obj) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace", "")


def _merge(into: Any, change: Any) -> None:
    """Strategic merge as kustomize does it for these patches: maps merge, lists merge by name."""
    for key, value in change.items():
        current = into.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            _merge(current, value)
        elif isinstance(value, list) and isinstance(current, list) and all("name" in v for v in value):
            # The patch's items come first, in its order, then the items it does not name.
            by_name = {item["name"]: item for item in current}
            for item in value:
                _merge(by_name.setdefault(item["name"], {}), item)
            named = [item["name"] for item in value]
            into[key] = [by_name[name] for name in named] + [i for i in current if i["name"] not in named]
        elif key != "namespace" or current is None:
            into[key] = value


def _containers(objects: list[Obj]) -> list[Obj]:
    pods = [o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Deployment"]
    return [container for pod in pods for container in pod["containers"]]


def rendered(folder: Path) -> list[Obj]:
    if shutil.which("kubectl"):
        command = ["kubectl", "kustomize", str(folder)]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]
    return render(folder)


def by_key(objects: list[Obj]) -> dict[tuple[str, str, str], Obj]:
    return {_key(obj): obj for obj in objects}


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module", params=[BASE, OVERLAY], ids=["base", "overlay"])
def objects(request: pytest.FixtureRequest) -> list[Obj]:
    return rendered(request.param)


def test_every_rendered_object_validates_against_the_kubernetes_schemas(objects: list[Obj]) -> None:
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_manifests_hold_every_object_a_cluster_needs(objects: list[Obj]) -> None:
    kinds = {(kind, name) for kind, name, _ in by_key(objects)}
    assert {
        ("Deployment", "suture-worker"),
        ("Deployment", "suture-ingress"),
        ("Service", "suture-ingress"),
        ("ServiceAccount", "suture"),
        ("ClusterRole", "suture"),
        ("ClusterRoleBinding", "suture"),
        ("ConfigMap", "suture-policies"),
        ("Secret", "suture"),
        ("PodDisruptionBudget", "suture-worker"),
        ("PodDisruptionBudget", "suture-ingress"),
        ("NetworkPolicy", "suture-ingress"),
    } <= kinds


def test_the_cluster_role_is_exactly_what_suture_permissions_rbac_prints(objects: list[Obj]) -> None:
    assert (BASE / "clusterrole.yaml").read_text() == cli("permissions", "--rbac")
    (role,) = [o for o in objects if o["kind"] == "ClusterRole"]
    assert role == yaml.safe_load(cli("permissions", "--rbac"))


def test_the_cluster_role_is_bound_to_the_workers_service_account_only(objects: list[Obj]) -> None:
    (binding,) = [o for o in objects if o["kind"] == "ClusterRoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "suture", "namespace": "suture"}]
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    pods = {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in deployments}
    assert pods["suture-worker"]["serviceAccountName"] == "suture"
    assert pods["suture-ingress"]["automountServiceAccountToken"] is False


def test_the_iam_policy_is_exactly_what_suture_permissions_iam_prints() -> None:
    shipped = json.loads((ROOT / "deploy" / "aws" / "iam-policy.json").read_text())
    assert shipped == json.loads(cli("permissions", "--iam"))


def test_the_policies_config_map_holds_the_default_policies_as_they_are() -> None:
    (config_map,) = [o for o in render(BASE) if o["kind"] == "ConfigMap"]
    defaults = ROOT / "policies" / "defaults"
    assert config_map["data"] == {path.name: path.read_text() for path in sorted(defaults.glob("*.yaml"))}


def test_every_container_runs_unprivileged_on_a_read_only_root_with_probes_and_limits(
    objects: list[Obj],
) -> None:
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert {"livenessProbe", "readinessProbe"} <= set(container)
            assert container["resources"]["limits"]["memory"]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]]
            assert "emptyDir" in volumes[mounts["/var/lib/suture"]]


def test_the_ingress_is_probed_for_liveness_and_readiness_on_its_own_endpoints(objects: list[Obj]) -> None:
    (ingress,) = [c for c in _containers(objects) if c["name"] == "ingress"]
    assert ingress["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert ingress["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_the_example_overlay_gives_the_worker_an_iam_role_and_its_own_image() -> None:
    objects = by_key(rendered(OVERLAY))
    account = objects["ServiceAccount", "suture", "suture"]
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    assert {c["image"] for c in _containers(list(objects.values()))} == {
        "registry.example.com/platform/suture:0.1.0"
    }


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed")
@pytest.mark.parametrize("folder", [BASE, OVERLAY], ids=["base", "overlay"])
def test_the_fallback_renderer_agrees_with_kubectl_kustomize(folder: Path) -> None:
    assert by_key(render(folder)) == by_key(rendered(folder))
