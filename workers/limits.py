"""Temporal's limits, checked at the door.

Temporal refuses a workflow input, signal or search attribute over its limits
(by default: 2 MiB per payload, 2 KiB per search-attribute value, 1,000
characters per workflow ID). Left to Temporal, such an input fails the call,
the ingress answers 5xx, and the sender retries an alert that can never land.
So each field is checked here, against limits comfortably inside Temporal's,
and an input over one gets a 422 naming the field and the limit.
"""

from __future__ import annotations

MAX_LABELS = 64
"""Labels (or annotations) per alert."""
MAX_LABEL_NAME = 128
MAX_LABEL_VALUE = 1024
"""Longest label value: ``namespace/service`` becomes a search attribute (2 KiB in Temporal)."""
MAX_ANNOTATION_VALUE = 32 * 1024
MAX_RUN_INPUT_BYTES = 256 * 1024
"""Largest alert or event one run takes as input (Temporal refuses payloads over 2 MiB;
an alert travels as a start input and again as a signal, and repeats add evidence)."""
MAX_REQUEST_PARAMETERS_BYTES = 128 * 1024
"""Largest CloudTrail ``requestParameters``/``responseElements``, serialized."""
MAX_SUBJECT = 256
"""Longest resource name an AWS event may be about (it is part of the search attributes)."""


def check_labels(labels: dict[str, str], max_value: int) -> None:
    """Raise ValueError naming the first label whose name or value is too long."""
    for name, value in labels.items():
        if not name or len(name) > MAX_LABEL_NAME:
            raise ValueError(f"label name {name[:40]!r}... must be 1 to {MAX_LABEL_NAME} characters")
        if len(value) > max_value:
            raise ValueError(f"{name!r} is {len(value)} characters; the limit is {max_value}")


def check_size(what: str, serialized: str, limit: int) -> None:
    """Raise ValueError when ``serialized`` (UTF-8) is over ``limit`` bytes."""
    size = len(serialized.encode())
    if size > limit:
        raise ValueError(f"{what} is {size} bytes serialized; the limit is {limit}")
