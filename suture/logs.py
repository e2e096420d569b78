"""Log lines people and log pipelines can both read.

Every run event (started, decided, acted, verified, escalated, closed, ...) is one
line on the ``suture.runs`` logger carrying the run ID, loop, target and outcome
as fields; the audit activities write them, once per newly recorded entry, so a
replayed workflow never logs its past again. ``SUTURE_LOG_FORMAT=json`` turns
every line into one JSON object for a log pipeline; the default is plain text.

Failures suture raises on purpose (a missing Deployment, a refused query, a
dependency that is down) are outcomes, not bugs: the SDK logs them with a
traceback, and :class:`ExpectedFailureOneLine` folds that into one readable line.
Anything else keeps its traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from temporalio.exceptions import ApplicationError

from suture.errors import FAILURES, ConfigError

RUN_EVENTS = logging.getLogger("suture.runs")
"""One line per run event, at INFO; the worker processes set this logger to INFO."""

RUN_FIELDS = ("event", "run_id", "loop", "target", "outcome")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"


def log_run_event(
    event: str, run_id: str, loop: str, target: str, outcome: str | None = None, detail: str = ""
) -> None:
    """Write one run event; ``outcome`` is what it concluded (the step itself when not given)."""
    outcome = str(outcome or event)
    fields = {"event": str(event), "run_id": run_id, "loop": str(loop), "target": target, "outcome": outcome}
    said = event if outcome == event else f"{event} {outcome}"
    suffix = f": {detail}" if detail else ""
    RUN_EVENTS.info("run %s (%s %s) %s%s", run_id, loop, target, said, suffix, extra=fields)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the run fields when present."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({field: getattr(record, field) for field in RUN_FIELDS if hasattr(record, field)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class ExpectedFailureOneLine(logging.Filter):
    """Fold the traceback of a failure suture raised on purpose into the line itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ApplicationError) and error.type in FAILURES:
            record.msg = f"{record.getMessage()}: {error.type}: {error.message}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


def log_format(environ: dict[str, str] | None = None) -> str:
    """The format ``SUTURE_LOG_FORMAT`` asks for (``text`` by default).

    Raises:
        ConfigError: the variable names neither format.
    """
    value = (os.environ if environ is None else environ).get("SUTURE_LOG_FORMAT", "").strip().lower()
    if value and value not in FORMATS:
        raise ConfigError(f"SUTURE_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {value!r}")
    return value or "text"


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time, like logging's last resort."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure_logging(fmt: str = "text", *, stream: TextIO | None = None, force: bool = False) -> None:
    """Log WARNING and above (run events at INFO once :data:`RUN_EVENTS` asks) in ``fmt``.

    Like :func:`logging.basicConfig`, nothing changes when the root logger already
    has handlers someone else installed (a test runner's), unless ``force``.
    """
    root = logging.getLogger()
    ours = [handler for handler in root.handlers if getattr(handler, "suture", False)]
    if len(ours) != len(root.handlers) and not force:
        return
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _Stderr()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(ExpectedFailureOneLine())
    setattr(handler, "suture", True)  # noqa: B010 - marks the handler as ours
    for old in ours:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
