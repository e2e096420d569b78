"""PromQL queries are built from a policy's template and an alert's labels, never pasted.

An alert's labels come from whoever can write a metric label or an alert rule,
and the verification query decides whether suture keeps what it did. Pasting a
label into the query text would let a value such as ``x"} * 0 or vector(0) #``
rewrite the query into one that always passes. So a template names labels only
through placeholders (``$service`` or ``${service}``) that stand for the whole
value, or a prefix or suffix of the value, of a label matcher
(``{service="$service"}``, ``{pod=~"$deployment-.+"}``); :func:`check_template`
refuses any other place when the policy is loaded. When a query is built, each
value is

- refused (:class:`LabelRefused`) when it is missing, longer than
  :data:`MAX_LABEL_VALUE` characters, or holds control, format or separator
  characters (a newline, a bidirectional override): no real workload name needs
  them and they hide what a query or a briefing says;
- quoted as a regular expression (RE2's ``QuoteMeta``) inside ``=~``/``!~``
  matchers, so ``.*`` matches two characters, not every series;
- escaped as a PromQL string literal (backslash, the quote, and any other
  character PromQL would read specially), so it can never close the string.

A refused label means the loop cannot verify what it would do, so it hands the
incident to a human before acting. ``$$`` is a literal ``$``; a ``$`` that starts
no placeholder (``"$1"`` in ``label_replace``, a regex anchor) stays as written.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from suture.errors import SutureError

MAX_LABEL_VALUE = 256
"""Longest label value put into a query; Kubernetes names stop at 253 characters."""

_PLACEHOLDER = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<named>[_a-zA-Z][_a-zA-Z0-9]*)|\{(?P<braced>[_a-zA-Z][_a-zA-Z0-9]*)\})"
)
_REFUSED_CATEGORIES = {
    "Cc": "control",
    "Cf": "format",
    "Cs": "surrogate",
    "Co": "private-use",
    "Zl": "line separator",
    "Zp": "paragraph separator",
}
_RE2_META = set("\\.+*?()|[]{}^$")
_MATCHER = re.compile(r"(=~|!~|!=|=)\s*$")

Context = Literal["literal", "regex"]


class LabelRefused(SutureError):
    """A label value cannot be put into a PromQL query safely.

    Attributes:
        label: the label's name.
    """

    def __init__(self, label: str, why: str) -> None:
        super().__init__(f"label {label!r} cannot be used in a PromQL query: {why}")
        self.label = label


@dataclass(frozen=True)
class _Slot:
    """A placeholder inside a string literal: which label, which matcher, which quote."""

    label: str
    context: Context
    quote: str


def check_template(template: str) -> list[str]:
    """The labels ``template`` refers to.

    Raises:
        ValueError: a placeholder stands anywhere but in a label matcher's value.
    """
    return [part.label for part in _parse(template) if isinstance(part, _Slot)]


def build_query(template: str, labels: Mapping[str, str], *, refuse_unsafe: bool = True) -> str:
    """``template`` with each placeholder replaced by its label's value, quoted for its place.

    With ``refuse_unsafe=False`` nothing is refused: values are still escaped and a
    missing label leaves its placeholder in place (a query that selects nothing).

    Raises:
        LabelRefused: a label is missing, too long or holds characters refused above.
        ValueError: the template puts a placeholder outside a label matcher's value.
    """
    pieces: list[str] = []
    for part in _parse(template):
        if isinstance(part, str):
            pieces.append(part)
            continue
        value = labels.get(part.label)
        if value is None:
            if refuse_unsafe:
                raise LabelRefused(part.label, "the alert does not carry it")
            pieces.append(f"${{{part.label}}}")
            continue
        if refuse_unsafe:
            _refuse_unsafe(part.label, value)
        if part.context == "regex":
            value = quote_regex(value)
        pieces.append(escape_string(value, part.quote))
    return "".join(pieces)


def escape_string(value: str, quote: str = '"') -> str:
    """``value`` as the inside of a PromQL string literal delimited by ``quote``."""
    out = []
    for char in value:
        if char in ("\\", quote):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif _refused_category(char) or not char.isprintable():
            code = ord(char)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)


def quote_regex(value: str) -> str:
    """``value`` as an RE2 pattern that matches exactly ``value`` (Go's ``QuoteMeta``)."""
    return "".join("\\" + char if char in _RE2_META else char for char in value)


def _refuse_unsafe(label: str, value: str) -> None:
    if len(value) > MAX_LABEL_VALUE:
        raise LabelRefused(label, f"its value is {len(value)} characters long, over {MAX_LABEL_VALUE}")
    for char in value:
        category = _refused_category(char)
        if category:
            raise LabelRefused(label, f"its value holds a {category} character (U+{ord(char):04X})")


def _refused_category(char: str) -> str | None:
    return _REFUSED_CATEGORIES.get(unicodedata.category(char))


def _parse(template: str) -> list[str | _Slot]:
    """Split ``template`` into text and placeholder slots, tracking PromQL strings and comments.

    Raises:
        ValueError: a placeholder outside a label matcher's value, or an unterminated string.
    """
    parts: list[str | _Slot] = []
    text: list[str] = []
    index = 0
    while index < len(template):
        char = template[index]
        if char == "#":
            end = template.find("\n", index)
            end = len(template) if end < 0 else end
            text.append(template[index:end])
            index = end
        elif char in "\"'`":
            context = _context_before("".join(text))
            end = _string_end(template, index)
            text.append(char)
            for piece in _string_parts(template[index + 1 : end], char, context):
                if isinstance(piece, str):
                    text.append(piece)
                else:
                    parts.append("".join(text))
                    text = []
                    parts.append(piece)
            text.append(char)
            index = end + 1
        elif char == "$":
            found = _PLACEHOLDER.match(template, index)
            if found and not found.group("escaped"):
                raise ValueError(
                    f"{found.group(0)} stands outside a label matcher; write it as a matcher's value, "
                    f'like {{service="{found.group(0)}"}}'
                )
            text.append("$")
            index += len(found.group(0)) if found else 1
        else:
            text.append(char)
            index += 1
    parts.append("".join(text))
    return [part for part in parts if part != ""]


def _string_end(template: str, start: int) -> int:
    quote, index = template[start], start + 1
    while index < len(template):
        if template[index] == "\\" and quote != "`":
            index += 2
            continue
        if template[index] == quote:
            return index
        index += 1
    raise ValueError(f"a string opened at character {start + 1} is never closed")


def _string_parts(body: str, quote: str, context: Context | None) -> list[str | _Slot]:
    parts: list[str | _Slot] = []
    last = 0
    for found in _PLACEHOLDER.finditer(body):
        parts.append(body[last : found.start()])
        last = found.end()
        if found.group("escaped"):
            parts.append("$")
            continue
        label = found.group("named") or found.group("braced")
        if context is None or quote == "`":
            raise ValueError(
                f"{found.group(0)} may only be the value of a label matcher in a quoted string, "
                f'like {{service="{found.group(0)}"}}'
            )
        parts.append(_Slot(label=label, context=context, quote=quote))
    parts.append(body[last:])
    return parts


def _context_before(text: str) -> Context | None:
    """The kind of matcher a string literal is the value of, or None when it is no matcher's."""
    found = _MATCHER.search(text)
    if found is None:
        return None
    return "regex" if found.group(1) in ("=~", "!~") else "literal"
