"""Durations as people write them in policy files: ``90s``, ``5m``, ``1h``, ``30d``."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration(value: object) -> float:
    """Return seconds for ``value``.

    Raises:
        ValueError: when the value is neither a number of seconds nor ``<n><unit>``.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        found = _PATTERN.match(str(value))
        if not found:
            raise ValueError(f"{value!r} is not a duration; write it like 90s, 5m, 1h or 30d")
        seconds = float(found.group(1)) * _UNITS[found.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Seconds = Annotated[float, BeforeValidator(parse_duration)]
"""A policy field given as a duration string and kept as seconds."""
