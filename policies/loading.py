"""Read policy YAML and report problems as ``file:line: what is wrong``.

pydantic reports an error by its path inside the document; the YAML node tree
knows the line of every key, so the two are joined here. The version pinned on
each policy is a hash of its own validated content, so reformatting a file does
not change it but editing a threshold does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from policies.models import Policy, PolicyFile
from policies.registry import action_spec
from suture.errors import PolicyError


def default_policy_dir() -> Path:
    """The policies shipped with suture."""
    return Path(str(resources.files("policies") / "defaults"))


def load_policy_file(path: Path) -> list[Policy]:
    """Validate one policy file.

    Raises:
        PolicyError: naming ``file:line`` of the first offending key.
    """
    text = path.read_text(encoding="utf-8")
    try:
        document = yaml.safe_load(text)
        tree = yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise PolicyError(f"not valid YAML: {error}", f"{path}{line}") from error
    try:
        parsed = PolicyFile.model_validate(document)
    except ValidationError as error:
        first = _most_telling(error)
        location = f"{path}:{_line_of(tree, first['loc'])}"
        where = ".".join(str(part) for part in first["loc"])
        raise PolicyError(f"{where}: {_message(first)}", location) from error
    for index, policy in enumerate(parsed.policies):
        _check_actions(policy, path, tree, index)
    return [_pinned(policy) for policy in parsed.policies]


def load_policies(directories: Iterable[Path]) -> list[Policy]:
    """Every policy under ``directories``, in file-name then file order.

    Raises:
        PolicyError: on the first invalid file, or when two policies share a name.
    """
    policies: list[Policy] = []
    seen: dict[str, Path] = {}
    for directory in directories:
        for path in sorted(Path(directory).glob("*.y*ml")):
            for policy in load_policy_file(path):
                if policy.name in seen:
                    raise PolicyError(
                        f"policy {policy.name!r} is also defined in {seen[policy.name]}", str(path)
                    )
                seen[policy.name] = path
                policies.append(policy)
    return policies


def _check_actions(policy: Policy, path: Path, tree: yaml.Node | None, index: int) -> None:
    for step_index, step in enumerate(policy.actions):
        loc: tuple[str | int, ...] = ("policies", index, "actions", step_index)
        try:
            spec = action_spec(step.type)
        except KeyError as error:
            raise PolicyError(str(error.args[0]), f"{path}:{_line_of(tree, (*loc, 'type'))}") from None
        if spec.loop != policy.loop:
            raise PolicyError(
                f"action {step.type!r} belongs to the {spec.loop} loop, not {policy.loop}",
                f"{path}:{_line_of(tree, (*loc, 'type'))}",
            )
        try:
            spec.params.model_validate(step.params)
        except ValidationError as error:
            first = _most_telling(error)
            params_loc = (*loc, "params", *first["loc"])
            raise PolicyError(
                f"{step.type} params: {'.'.join(map(str, first['loc']))}: {_message(first)}",
                f"{path}:{_line_of(tree, params_loc)}",
            ) from None


def _most_telling(error: ValidationError) -> Any:
    """The error to show first: an unknown key explains the "field required" it causes."""
    errors = error.errors()
    return next((item for item in errors if item["type"] == "extra_forbidden"), errors[0])


def _message(item: Any) -> str:
    if item["type"] == "extra_forbidden":
        return f"unknown key {item['loc'][-1]!r} (a typo? unknown keys are refused)"
    return str(item["msg"])


def _pinned(policy: Policy) -> Policy:
    content = json.dumps(policy.model_dump(mode="json", exclude={"version"}), sort_keys=True)
    digest = hashlib.sha256(content.encode()).hexdigest()[:12]
    return policy.model_copy(update={"version": digest})


def _line_of(node: yaml.Node | None, loc: Iterable[str | int]) -> int:
    """Line (1-based) of the deepest key or item of ``loc`` found in the YAML tree."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        found = _child(node, part)
        if found is None:
            break
        marker, node = found
        line = marker.start_mark.line + 1
    return line


def _child(node: yaml.Node | None, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """The node that marks ``part`` (its key, or the item) and the node to descend into."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == part:
                return key, value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part], node.value[part]
    return None
