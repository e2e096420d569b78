"""Every action suture can take, each declared once beside its kind's other actions.

A declaration names the action, its loop, the parameters it accepts, the typed
state its undo restores, its prepare/do/undo/verify activities (references, not
names typed twice), the permissions it needs, how many targets one run may touch,
and a policy example. The package is pure (models and Temporal activity
signatures only), so workflows import it; ``activities/`` implements the
signatures. Importing the package registers every action.
"""

from __future__ import annotations

from policies.actions import (  # importing them registers the actions
    aws,
    kafka,
    kubernetes,
    prometheus,
    resource,
)
from policies.actions.declaration import (
    ActionParams,
    ActionSpec,
    ActivityDeclaration,
    NoParams,
    Permissions,
    RbacRule,
    UndoState,
    action_spec,
    activity_declaration,
    activity_name,
    declare,
    declared_activities,
    implements,
    over_the_cap,
    register,
    registered_actions,
)

__all__ = [
    "ActionParams",
    "ActionSpec",
    "ActivityDeclaration",
    "NoParams",
    "Permissions",
    "RbacRule",
    "UndoState",
    "action_spec",
    "activity_declaration",
    "activity_name",
    "aws",
    "declare",
    "declared_activities",
    "implements",
    "kafka",
    "kubernetes",
    "over_the_cap",
    "prometheus",
    "register",
    "registered_actions",
    "resource",
]
