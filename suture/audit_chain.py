"""The keyed audit chain: what makes rewriting suture's history detectable.

A plain hash chain only proves that the rows agree with each other: whoever can
write to the database can edit row 1000 and recompute every later hash. So each
event also carries an HMAC-SHA256 of its hash under a secret that is never stored
beside the data (``SUTURE_AUDIT_KEY``), and the chain head carries one too. Without
the key, a rewrite cannot produce MACs that verify.

A database restored from an older backup is consistent *and* correctly keyed, so
the head is also checkpointed outside the database: after every append the store
writes the chain's length and newest hash, signed, to a head file (atomically).
``suture audit verify`` refuses a chain shorter than its checkpoint or one whose
event at the checkpointed position differs.

When ``SUTURE_AUDIT_KEY`` is unset a key is generated once into a file (mode
0600) beside the SQLite database or in the state directory, and a warning says so.
That suits one machine; in production set the variable from a secret store, the
same value on every worker sharing the database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.engine import URL, make_url

from suture.errors import ConfigError
from suture.models import AuditEntry, LoopResult
from suture.tables import as_utc, sqlite_file

log = logging.getLogger(__name__)

GENESIS = "0" * 64
"""``prev_hash`` of the first event of the chain."""
KEY_VARIABLE = "SUTURE_AUDIT_KEY"
MIN_KEY_LENGTH = 32
KEY_FILE = "audit.key"
RUNS = "runs"
"""``workflow_id`` of the chain events that seal each runs row (``suture report`` reads the rows)."""
RUN_CLOSED = "run_closed"
RUN_SEALED = "run_sealed"
"""Step of the seal written for a run closed before the audit key existed."""
CHAIN_HEAD_GAUGE = "suture_audit_chain_head_seq"
CHAIN_HEAD_HELP = "Number of events in suture's audit chain (its head sequence); it only grows."


def chain_hash(prev_hash: str, entry: AuditEntry) -> str:
    """sha256 of the previous hash followed by the entry's canonical JSON."""
    return hashlib.sha256((prev_hash + canonical_json(entry)).encode()).hexdigest()


def canonical_json(entry: AuditEntry) -> str:
    """The entry as sorted, compact JSON with its timestamp in UTC microseconds."""
    fields = entry.model_dump(mode="json")
    fields["at"] = as_utc(entry.at).isoformat(timespec="microseconds")
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class AuditKey:
    """The chain's HMAC secret. Its ``key_id`` may be stored; the secret never is.

    Raises:
        ConfigError: when the secret is shorter than 32 bytes.
    """

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_KEY_LENGTH:
            raise ConfigError(
                f"{KEY_VARIABLE}: the audit key must be at least {MIN_KEY_LENGTH} characters "
                "(for example the output of `openssl rand -hex 32`)"
            )
        self._secret = secret
        self.key_id = self.sign("suture audit key id")[:16]

    def sign(self, *parts: object) -> str:
        """HMAC-SHA256 of ``parts`` joined by a separator no part contains."""
        message = "\x1f".join(str(part) for part in parts).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def verifies(self, mac: str | None, *parts: object) -> bool:
        return mac is not None and hmac.compare_digest(mac, self.sign(*parts))

    def __repr__(self) -> str:
        return f"AuditKey(key_id={self.key_id!r})"


def load_audit_key(secret: str | None, key_file: Path | None) -> AuditKey:
    """The key from ``secret`` (``SUTURE_AUDIT_KEY``), else from ``key_file``, generated once.

    With neither (an in-memory database) the key lives as long as the process.
    """
    if secret:
        return AuditKey(secret.encode())
    if key_file is None:
        return AuditKey(secrets.token_hex(32).encode())
    if not key_file.exists():
        _generate_key_file(key_file)
    if key_file.stat().st_mode & 0o077:
        log.warning("%s is readable by other users; chmod 600 it", key_file)
    return AuditKey(key_file.read_text(encoding="utf-8").strip().encode())


def _generate_key_file(key_file: Path) -> None:
    """Write a new key where no process has one yet; a racing process's key wins if it was first."""
    key_file.parent.mkdir(parents=True, exist_ok=True)
    draft = key_file.with_name(f".{key_file.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    try:
        os.link(draft, key_file)
    except FileExistsError:
        return
    finally:
        draft.unlink()
    log.warning(
        "generated an audit key at %s because %s is unset; production must set %s "
        "(the same value on every process sharing the audit store)",
        key_file,
        KEY_VARIABLE,
        KEY_VARIABLE,
    )


def key_mismatch(database: str, chain_key_id: str, key: AuditKey) -> ConfigError:
    """The error for a process whose key is not the one the chain was written with."""
    return ConfigError(
        f"{KEY_VARIABLE}: the audit chain in {database} is keyed with key id {chain_key_id}, "
        f"but this process has key id {key.key_id}; use the key the chain was written with "
        "(every process sharing the store needs the same one)"
    )


def key_folder(url: str | URL, state_dir: Path | None) -> Path | None:
    """Where the generated key and the head file live: beside a SQLite file, else the state dir."""
    database = sqlite_file(url)
    if database is not None:
        return database.absolute().parent
    if make_url(url).get_backend_name() == "sqlite":
        return None  # in memory: nothing outlives the process
    # The same default as Settings.state_dir, for callers that pass only a URL.
    return state_dir or Path(os.environ.get("SUTURE_STATE_DIR") or Path.cwd() / ".suture")


def head_file(url: str | URL, folder: Path | None) -> Path | None:
    """The head file of the database at ``url``, in ``folder`` (created); None without a folder."""
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    database = sqlite_file(url)
    if database is not None:
        return folder / f"{database.name}.audit-head"
    where = make_url(url).render_as_string(hide_password=True)
    return folder / f"audit-head-{hashlib.sha256(where.encode()).hexdigest()[:12]}.json"


# --- the head checkpoint -------------------------------------------------------------------


class HeadCheckpoint(BaseModel):
    """The chain's length and newest hash as last written by this machine, signed."""

    model_config = ConfigDict(extra="forbid")

    seq: int
    hash: str
    key_id: str
    mac: str

    @classmethod
    def sign(cls, key: AuditKey, seq: int, head_hash: str) -> HeadCheckpoint:
        return cls(seq=seq, hash=head_hash, key_id=key.key_id, mac=key.sign("head file", seq, head_hash))

    def signed_by(self, key: AuditKey) -> bool:
        return key.verifies(self.mac, "head file", self.seq, self.hash)


def write_checkpoint(path: Path, checkpoint: HeadCheckpoint) -> None:
    """Replace the head file atomically: a reader sees the old checkpoint or the new one."""
    draft = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    draft.write_text(checkpoint.model_dump_json(), encoding="utf-8")
    os.replace(draft, path)


def read_checkpoint(path: Path) -> HeadCheckpoint | None:
    """The head file's checkpoint; None when there is none yet.

    Raises:
        ValueError: when the file exists but does not read as a checkpoint.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return HeadCheckpoint.model_validate_json(text)
    except ValidationError as error:
        raise ValueError(f"{path} does not read as a head checkpoint: {error.errors()[0]['msg']}") from None


# --- runs rows, sealed in the chain ----------------------------------------------------------


def run_seal(result: LoopResult) -> str:
    """What the chain records about a runs row: outcome and approver in clear, the rest digested.

    ``undo`` is left out because the runs table does not keep it.
    """
    fields = result.model_dump(exclude={"undo"})
    digest = hashlib.sha256(
        json.dumps(fields, sort_keys=True, separators=(",", ":"), default=_canonical).encode()
    ).hexdigest()
    actions = ", ".join(f"{action.type} {action.target}" for action in result.actions) or "none"
    return (
        f"outcome {result.outcome}; approver {result.approver or '-'}; actions {actions}; "
        f"record sha256:{digest}"
    )


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat(timespec="microseconds")
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} has no canonical form")


# --- what verification finds -----------------------------------------------------------------


class ChainBreak(BaseModel):
    """Where :meth:`AuditStore.verify_chain` found the chain broken, and how."""

    model_config = ConfigDict(extra="forbid")

    event_id: int | None
    workflow_id: str | None = None
    seq: int | None = None
    run: str | None = None
    """The runs row that differs from the chain, when the break is there."""
    reason: str
    checked: int
    """Events that verified before the break."""

    def __str__(self) -> str:
        if self.event_id:
            where = f"event {self.event_id} ({self.workflow_id} #{self.seq})"
        elif self.run:
            where = f"run {self.run}"
        else:
            where = "the chain head"
        return f"{where}: {self.reason}"


class ChainReport(BaseModel):
    """Everything ``suture audit verify`` found: intact only when ``breaks`` is empty."""

    model_config = ConfigDict(extra="forbid")

    events: int
    """Events in the chain."""
    legacy_events: int
    """Events ``1..legacy_events`` predate the audit key: their MACs are absent, and only the
    keyed events after them (and the signed head) protect them from a rewrite."""
    runs: int
    key_id: str
    checkpoint: str | None
    """The head file checked, or None when this machine has none yet."""
    breaks: list[ChainBreak] = []

    @property
    def intact(self) -> bool:
        return not self.breaks

    def summary(self) -> str:
        legacy = (
            f"; unkeyed legacy rows 1..{self.legacy_events} (written before the audit key existed)"
            if self.legacy_events
            else ""
        )
        checkpoint = f"head file {self.checkpoint}" if self.checkpoint else "no head file on this machine"
        return (
            f"{self.events} events, key {self.key_id}{legacy}; {self.runs} runs checked against the chain; "
            f"{checkpoint}"
        )


def chain_head_collector(read_seq: Any) -> Any:
    """A Prometheus collector exposing ``suture_audit_chain_head_seq`` from ``read_seq()``.

    Register it on the registry that ``/metrics`` serves:
    ``registry.register(chain_head_collector(store.chain_head_seq))``.
    """
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector

    class ChainHeadCollector(Collector):
        def collect(self) -> Any:
            yield GaugeMetricFamily(CHAIN_HEAD_GAUGE, CHAIN_HEAD_HELP, value=read_seq())

    return ChainHeadCollector()
