"""The actions suture knows, keyed by name: the lookup policies and workflows use.

The actions themselves are declared in :mod:`policies.actions`, one module per
kind, beside the signatures of the activities that carry them out. A policy may
only name actions found here, and the registry meta-test fails on an entry that
lacks any part of its declaration.
"""

from __future__ import annotations

from policies.actions import (
    ActionParams,
    ActionSpec,
    NoParams,
    Permissions,
    RbacRule,
    action_spec,
    over_the_cap,
    registered_actions,
)
from policies.actions.aws import PublicAccessBlockParams
from policies.actions.kubernetes import ScaleParams

__all__ = [
    "ActionParams",
    "ActionSpec",
    "NoParams",
    "Permissions",
    "PublicAccessBlockParams",
    "RbacRule",
    "ScaleParams",
    "action_spec",
    "over_the_cap",
    "registered_actions",
]
