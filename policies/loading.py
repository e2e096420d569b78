"""Read policy YAML and report every problem at once, each as ``file:line: what is wrong``.

pydantic reports an error by its path inside the document; the YAML node tree
knows the line of every key, so the two are joined here. Each policy of a file
is validated on its own, so one broken policy does not hide the problems of the
next, and then checked for what a schema cannot see: its actions against the
registry, unacknowledged risky settings and invalid PromQL
(:mod:`policies.hazards`), and names used twice. A duplicate YAML key is an error
too: YAML would silently keep the last value (``mode: observe`` then ``mode:
autonomous`` means autonomous). The worker loads policies through the same code,
so what ``suture policy check`` accepts is exactly what the worker runs.

The version pinned on each policy is a hash of its own validated content, so
reformatting a file does not change it but editing a threshold does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from policies.graph import DEPENDENCIES_FILE
from policies.hazards import hazards
from policies.models import Policy
from policies.registry import action_spec
from suture.errors import PolicyError

_POLICY: TypeAdapter[Policy] = TypeAdapter(Policy)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy file, where it is and what to do."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class InvalidPolicies(PolicyError):
    """Policy files do not validate; ``problems`` lists every problem found, in file and line order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        first, rest = problems[0], problems[1:]
        super().__init__("".join([first.message, *(f"\n{problem}" for problem in rest)]), first.location)
        self.problems = list(problems)


@dataclass(frozen=True)
class LoadedPolicy:
    """A valid policy and the file and line that define it."""

    policy: Policy
    path: Path
    line: int


def default_policy_dir() -> Path:
    """The policies shipped with suture."""
    return Path(str(resources.files("policies") / "defaults"))


def load_policy_file(path: Path) -> list[Policy]:
    """Validate one policy file.

    Raises:
        InvalidPolicies: naming ``file:line`` of every problem in the file.
    """
    return [loaded.policy for loaded in check_policy_files([path], raise_on_problems=True)[0]]


def load_policies(directories: Iterable[Path]) -> list[Policy]:
    """Every policy under ``directories``, in file-name then file order.

    Raises:
        InvalidPolicies: naming every problem of every file, names used twice included.
    """
    paths = [
        path
        for directory in directories
        for path in sorted(Path(directory).glob("*.y*ml"))
        if path.name != DEPENDENCIES_FILE  # the declared dependency graph, not policies
    ]
    return [loaded.policy for loaded in check_policy_files(paths, raise_on_problems=True)[0]]


def check_policy_files(
    paths: Sequence[Path], *, raise_on_problems: bool = False
) -> tuple[list[LoadedPolicy], list[Problem]]:
    """The valid policies of ``paths`` and every problem found, a name used in two files included.

    Raises:
        InvalidPolicies: only with ``raise_on_problems``, when a problem was found.
    """
    named: list[tuple[LoadedPolicy, bool]] = []
    problems: list[Problem] = []
    for path in paths:
        found, file_problems = _check_file(Path(path))
        problems += file_problems
        named += found
    problems += _names_used_twice([entry for entry, _ in named])
    loaded = [entry for entry, clean in named if clean]
    if problems and raise_on_problems:
        raise InvalidPolicies(problems)
    return loaded, problems


def _check_file(path: Path) -> tuple[list[tuple[LoadedPolicy, bool]], list[Problem]]:
    """Every schema-valid policy of ``path`` (and whether it has no problem), and the problems."""
    text, problem = _read_text(path)
    if problem is not None:
        return [], [problem]
    try:
        tree, document, duplicates = _parse_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        what = " ".join(str(getattr(error, "problem", None) or error).split())
        return [], [Problem(f"{path}{line}", f"not valid YAML: {what}")]
    problems = [
        Problem(
            f"{path}:{line}", f"duplicate key {key!r} (first at line {first}); YAML would keep only the last"
        )
        for key, first, line in duplicates
    ]
    items, shape_problems = _policy_items(document, path, tree)
    loaded: list[tuple[LoadedPolicy, bool]] = []
    for index, item in enumerate(items):
        policy, policy_problems = _check_policy(item, index, path, tree)
        problems += policy_problems
        if policy is not None:
            entry = LoadedPolicy(_pinned(policy), path, _line_of(tree, ("policies", index, "name")))
            loaded.append((entry, not policy_problems))
    problems = shape_problems + sorted(problems, key=lambda p: int(p.location.rpartition(":")[2] or 0))
    return loaded, problems


def _read_text(path: Path) -> tuple[str, Problem | None]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "", Problem(str(path), "no such file")
    except OSError as error:
        return "", Problem(str(path), f"cannot be read: {error.strerror}")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return "", Problem(
            f"{path}:{line}",
            f"not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); "
            "save the file as UTF-8",
        )


class _KeyCheckingLoader(yaml.SafeLoader):
    """A SafeLoader that notes every mapping key given twice, with both lines."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[str, int, int]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    self.duplicates.append((str(key), seen[key], line))
                else:
                    seen[key] = line
            except TypeError:  # an unhashable key; SafeLoader reports it below
                pass
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str) -> tuple[yaml.Node | None, Any, list[tuple[str, int, int]]]:
    """The node tree (for lines), the document, and every duplicate key as (key, first line, line)."""
    loader = _KeyCheckingLoader(text)
    try:
        tree = loader.get_single_node()
        document = loader.construct_document(tree) if tree is not None else None
    finally:
        loader.dispose()
    return tree, document, loader.duplicates


def _policy_items(document: Any, path: Path, tree: yaml.Node | None) -> tuple[list[Any], list[Problem]]:
    """The items under ``policies:``, or the problem with the file's shape."""
    if not isinstance(document, dict) or "policies" not in document:
        return [], [Problem(f"{path}:1", "a policy file holds a list under 'policies:'")]
    problems = [
        Problem(
            f"{path}:{_line_of(tree, (key,))}", f"unknown key {key!r} (a policy file holds only 'policies:')"
        )
        for key in document
        if key != "policies"
    ]
    items = document["policies"]
    if not isinstance(items, list) or not items:
        problems.append(
            Problem(
                f"{path}:{_line_of(tree, ('policies',))}", "'policies:' must be a list of at least one policy"
            )
        )
        return [], problems
    return items, problems


def _check_policy(
    item: Any, index: int, path: Path, tree: yaml.Node | None
) -> tuple[Policy | None, list[Problem]]:
    prefix: tuple[str | int, ...] = ("policies", index)
    try:
        policy = _POLICY.validate_python(item)
    except ValidationError as error:
        return None, [
            Problem(
                f"{path}:{_line_of(tree, (*prefix, *found['loc']))}",
                f"{'.'.join(map(str, (*prefix, *found['loc'])))}: {_message(found)}",
            )
            for found in error.errors()
        ]
    problems = _action_problems(policy, path, tree, prefix)
    problems += [
        Problem(f"{path}:{_line_of(tree, (*prefix, *hazard.location))}", f"{policy.name}: {hazard.message}")
        for hazard in hazards(policy)
    ]
    return policy, problems


def _action_problems(
    policy: Policy, path: Path, tree: yaml.Node | None, prefix: tuple[str | int, ...]
) -> list[Problem]:
    problems = []
    for step_index, step in enumerate(getattr(policy, "actions", [])):
        loc = (*prefix, "actions", step_index)
        where = f"{path}:{_line_of(tree, (*loc, 'type'))}"
        try:
            spec = action_spec(step.type)
        except KeyError as error:
            problems.append(Problem(where, str(error.args[0])))
            continue
        if spec.loop != policy.loop:
            problems.append(
                Problem(where, f"action {step.type!r} belongs to the {spec.loop} loop, not {policy.loop}")
            )
            continue
        try:
            spec.params.model_validate(step.params)
        except ValidationError as error:
            problems += [
                Problem(
                    f"{path}:{_line_of(tree, (*loc, 'params', *found['loc']))}",
                    f"{step.type} params: {'.'.join(map(str, found['loc']))}: {_message(found)}",
                )
                for found in error.errors()
            ]
    return problems


def _names_used_twice(loaded: list[LoadedPolicy]) -> list[Problem]:
    first: dict[str, LoadedPolicy] = {}
    problems = []
    for entry in loaded:
        earlier = first.setdefault(entry.policy.name, entry)
        if earlier is not entry:
            where = (
                f"this file at line {earlier.line}"
                if earlier.path == entry.path
                else f"{earlier.path}:{earlier.line}"
            )
            problems.append(
                Problem(
                    f"{entry.path}:{entry.line}",
                    f"policy {entry.policy.name!r} is also defined in {where}; names must be unique",
                )
            )
    return problems


def _message(item: Any) -> str:
    if item["type"] == "extra_forbidden":
        return f"unknown key {item['loc'][-1]!r} (a typo? unknown keys are refused)"
    return str(item["msg"])


LATER_FIELDS: dict[str, object] = {
    "acknowledge": [],
    "max_dependents": None,
    "storm": None,
    "trust": None,
    "notify": None,
}
"""Policy fields added after versions were first recorded, with their defaults."""
LATER_APPROVAL_FIELDS: dict[str, object] = {"tiers": [], "final": "abort"}
"""Likewise for the ``approval`` block."""


def _pinned(policy: Policy) -> Policy:
    # A field added later leaves the version as it was while it holds its default, so a
    # version recorded by an earlier run still names the same content after an upgrade.
    content = policy.model_dump(mode="json", exclude={"version"})
    for key, default in LATER_FIELDS.items():
        if key in content and content[key] == default:
            del content[key]
    approval = content.get("approval")
    if isinstance(approval, dict):
        for key, default in LATER_APPROVAL_FIELDS.items():
            if key in approval and approval[key] == default:
                del approval[key]
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]
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
