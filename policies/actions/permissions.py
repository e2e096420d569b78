"""Least-privilege policies generated from the declarations: what ``suture permissions`` prints.

The worker's identity needs what the registered actions need (prepare, do, undo
and verify) plus what the loops read outside any action (the trail, rollout
history). Nothing else is granted, and the output is deterministic, so the
manifests that ship it can be compared with what this module prints.
"""

from __future__ import annotations

from typing import Any

import yaml

from policies.actions.declaration import (
    Permissions,
    RbacRule,
    declared_activities,
    registered_actions,
)

CLUSTER_ROLE_NAME = "suture"

SELF_CHECK = Permissions(
    iam=("iam:SimulatePrincipalPolicy", "sts:GetCallerIdentity"),
    rbac=(RbacRule(("authorization.k8s.io",), ("selfsubjectaccessreviews",), ("create",)),),
)
"""What ``suture readiness`` and a run about to act need to ask the systems which
permissions the worker's identity actually holds (a review, a policy simulation)."""


def iam_policy() -> dict[str, Any]:
    """An IAM policy document: one statement per action, one per read, each with a Sid."""
    statements = [_statement(spec.name, spec.permissions) for spec in registered_actions()]
    statements += [
        _statement(declared.name, declared.permissions)
        for declared in declared_activities()
        if declared.permissions.iam
    ]
    statements.append(_statement("readiness.self_check", SELF_CHECK))
    return {"Version": "2012-10-17", "Statement": [s for s in statements if s["Action"]]}


def cluster_role() -> dict[str, Any]:
    """A Kubernetes ClusterRole with one rule per API group and resource, verbs merged."""
    verbs: dict[tuple[str, str], set[str]] = {}
    for permissions in _everything():
        for rule in permissions.rbac:
            for group in rule.api_groups:
                for resource in rule.resources:
                    verbs.setdefault((group, resource), set()).update(rule.verbs)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": CLUSTER_ROLE_NAME,
            "labels": {"app.kubernetes.io/name": "suture"},
            "annotations": {"suture.dev/generated-by": "suture permissions --rbac"},
        },
        "rules": [
            {"apiGroups": [group], "resources": [resource], "verbs": sorted(found)}
            for (group, resource), found in sorted(verbs.items())
        ],
    }


def cluster_role_yaml() -> str:
    """The ClusterRole as a Kubernetes manifest."""
    return "---\n" + yaml.safe_dump(cluster_role(), sort_keys=False, default_flow_style=False)


def _everything() -> list[Permissions]:
    return [
        *(spec.permissions for spec in registered_actions()),
        *(declared.permissions for declared in declared_activities()),
        SELF_CHECK,
    ]


def _statement(name: str, permissions: Permissions) -> dict[str, Any]:
    sid = "".join(part.title() for part in name.replace("_", ".").split("."))
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(set(permissions.iam)), "Resource": "*"}
