"""Hypothesis strategies for hostile input: arbitrary JSON, and valid documents bent out of shape.

A parser that survives random bytes can still fall over on a document that is
*almost* right, so most of what these produce starts from a valid payload and
changes one to three things in it: a key removed or added, a value swapped for
one of another type, a string made huge or strange, a list emptied or repeated,
an object nested far deeper than any sender would.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import strategies as st

JsonPath = tuple[str | int, ...]

HUGE_SIZES = (129, 257, 1025, 2049, 40_000, 300_000, 2_200_000)
"""String lengths just over the door's limits (fingerprint, subject, label value,
annotation, request parameters, run input) and over Temporal's 2 MiB payload limit."""

STRANGE_TEXT = (
    "",
    " ",
    "\u0000",
    "\ud800",  # a lone surrogate: legal as a JSON escape, not encodable as UTF-8
    "a\udfffb",
    "\u202e\u0645\u0631\u062d\u0628\u0627",  # right-to-left override, Arabic
    "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660\u0661\u0662",  # Arabic-Indic digits
    "\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19\uff10\uff11\uff12",  # fullwidth digits
    "😀" * 40,
    'x"} * 0 or absent_x{a="',
    "\\",
    "\n\r\t",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "2026-02-30T00:00:00Z",
    "NaN",
    "firing",
    "resolved",
    "../../etc/passwd",
    "reliability-x",
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63, max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(STRANGE_TEXT),
)

json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=25,
)
"""Any JSON value (as Python), small enough to generate quickly."""


@st.composite
def huge_strings(draw: st.DrawFn, sizes: tuple[int, ...] = HUGE_SIZES) -> str:
    return draw(st.sampled_from(["x", "é", "😀", '"', "\\", "\u0000"])) * draw(st.sampled_from(sizes))


@st.composite
def deep_nesting(draw: st.DrawFn) -> Any:
    # json.dumps recurses, so nesting that deep is sent as raw text instead (see hostile_bodies).
    value: Any = draw(scalars)
    for _ in range(draw(st.integers(min_value=10, max_value=200))):
        value = [value] if draw(st.booleans()) else {"a": value}
    return value


replacements = st.one_of(json_values, huge_strings(), deep_nesting(), st.sampled_from(STRANGE_TEXT))


def container_paths(document: Any, path: JsonPath = ()) -> list[JsonPath]:
    """Every path to an object or array inside ``document``, the root included."""
    if isinstance(document, dict):
        found = [path]
        for key, value in document.items():
            found += container_paths(value, (*path, key))
        return found
    if isinstance(document, list):
        found = [path]
        for index, value in enumerate(document):
            found += container_paths(value, (*path, index))
        return found
    return []


def _at(document: Any, path: JsonPath) -> Any:
    for part in path:
        document = document[part]
    return document


@st.composite
def _mutate_once(draw: st.DrawFn, document: Any, values: st.SearchStrategy[Any]) -> Any:
    paths = container_paths(document)
    if not paths:
        return draw(values)
    container = _at(document, draw(st.sampled_from(paths)))
    if isinstance(container, dict):
        keys = sorted(container)
        operation = draw(st.sampled_from(["drop", "replace", "add"] if keys else ["add"]))
        if operation == "add":
            container[draw(st.text(max_size=30) | st.sampled_from(STRANGE_TEXT))] = draw(values)
        else:
            key = draw(st.sampled_from(keys))
            if operation == "drop":
                del container[key]
            else:
                container[key] = draw(values)
        return document
    operation = draw(st.sampled_from(["drop", "replace", "append", "repeat"] if container else ["append"]))
    if operation == "append":
        container.append(draw(values))
    else:
        index = draw(st.integers(min_value=0, max_value=len(container) - 1))
        if operation == "drop":
            del container[index]
        elif operation == "replace":
            container[index] = draw(values)
        else:
            container.extend([container[index]] * draw(st.integers(min_value=1, max_value=40)))
    return document


@st.composite
def mutated(
    draw: st.DrawFn, valid: Any, values: st.SearchStrategy[Any] = replacements, max_mutations: int = 3
) -> Any:
    """``valid`` with one to ``max_mutations`` things changed to ``values`` (``valid`` stays intact)."""
    document = copy.deepcopy(valid)
    for _ in range(draw(st.integers(min_value=1, max_value=max_mutations))):
        document = draw(_mutate_once(document, values))
    return document


def documents(valid: Any, values: st.SearchStrategy[Any] = replacements) -> st.SearchStrategy[Any]:
    """The valid document itself, bent versions of it (values drawn from ``values``), or any JSON."""
    return st.one_of(st.just(valid), mutated(valid, values), json_values)


def encode(document: Any, ascii_only: bool) -> bytes:
    """JSON bytes; a lone surrogate in non-ASCII mode becomes invalid UTF-8, as a careless sender sends it."""
    return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def hostile_bodies(draw: st.DrawFn, valid: Any) -> bytes:
    """Request bodies: JSON documents from :func:`documents`, or bytes no JSON parser should trust."""
    kind = draw(st.sampled_from(["document"] * 6 + ["bytes", "truncated", "deep", "oversized", "prefixed"]))
    if kind == "document":
        return encode(draw(documents(valid)), draw(st.booleans()))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    whole = encode(valid, ascii_only=True)
    if kind == "truncated":
        return whole[: draw(st.integers(min_value=0, max_value=len(whole) - 1))]
    if kind == "deep":
        depth = draw(st.sampled_from([1_000, 10_000, 200_000]))
        return b'{"version": "4", "alerts": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == "oversized":
        # Over the ingress's 8 MiB body limit: whitespace is valid JSON padding.
        return whole[:-1] + b" " * (8 * 1024 * 1024) + b"}"
    prefix = draw(st.sampled_from([b"\xef\xbb\xbf", b"\x00", b" \n", b"NaN", b"//", b"]"]))
    return prefix + whole
