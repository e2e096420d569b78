"""Names of the people who approve, reject, undo, pause, resume and unlock.

A name goes into the audit trail, the runs table, Temporal payloads and policy
approver lists, so it is a validated identifier, never free text: lowercase
letters and digits, then up to 63 more of those or ``.``, ``_``, ``@``, ``-`` (so
``oncall-alice`` and ``alice@example.com`` are names; ``Alice``, ``bob smith`` and
quotes are not). Lowercase only, rather than folded, so that the name a person
types is exactly the name a policy lists and the trail records. ``suture`` is
reserved: it is the actor suture records its own steps under.

These are pure functions (no I/O) so that workflows can check an approver's
name as well as the CLI can. A name says who someone claims to be; binding it to
a real identity is the job of Temporal's authorizer and claim mapper, with mTLS,
on a real cluster.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

from suture.errors import SutureError

PERSON_NAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
"""The alphabet of a person's name (matched in full, ASCII only)."""
RESERVED = frozenset({"suture"})


class InvalidName(SutureError, ValueError):
    """A person's name outside the documented alphabet."""


def person_name(name: str) -> str:
    """``name`` unchanged when it is a valid person's name.

    Raises:
        InvalidName: naming the rule the name breaks.
    """
    if PERSON_NAME.fullmatch(name):
        if name in RESERVED:
            raise InvalidName(f"{name!r} is reserved: suture records its own steps under that name")
        return name
    hint = f"; did you mean {name.lower()!r}?" if PERSON_NAME.fullmatch(name.lower()) else ""
    shown = name if len(name) <= 80 else name[:77] + "..."
    raise InvalidName(
        f"{shown!r} is not a valid name: use 1-64 lowercase letters, digits, '.', '_', '@' or '-', "
        f"starting with a letter or digit{hint}"
    )


def is_person_name(name: object) -> bool:
    """Whether ``name`` is a valid person's name (for code that refuses rather than raises)."""
    if not isinstance(name, str):
        return False
    try:
        person_name(name)
    except InvalidName:
        return False
    return True


PersonName = Annotated[str, AfterValidator(person_name)]
"""A model field holding a person's name, validated like :func:`person_name`."""
