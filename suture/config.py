"""Settings read from the environment, checked once at start-up.

Every process (worker, ingress, CLI) reads the same variables, so a setting means
the same thing everywhere. A wrong value stops the process with one line naming
the variable and what it should look like, instead of failing later inside a
client library.

=============================  ===================================================
variable                       meaning (default)
=============================  ===================================================
SUTURE_STATE_DIR               where local state lives (``.suture`` in the cwd)
SUTURE_DB_URL                  audit store URL (``sqlite:///$SUTURE_STATE_DIR/suture.db``)
SUTURE_AUDIT_KEY               HMAC key of the audit chain, 32+ characters; set it in production
                               (unset: generated once into ``audit.key`` beside the database)
SUTURE_POLICY_DIRS             policy folders, ``os.pathsep``-separated (the shipped defaults)
SUTURE_ESCALATION_WEBHOOK      generic JSON webhook that receives briefings (none: log only)
SUTURE_WEBHOOK_TOKEN           bearer token the ingress requires from webhook senders (none)
TEMPORAL_ADDRESS               Temporal frontend ``host:port`` (``127.0.0.1:7233``)
TEMPORAL_NAMESPACE             Temporal namespace (``default``)
TEMPORAL_TLS_CERT / _KEY       client certificate and key for mTLS (none)
TEMPORAL_TLS_CA                CA bundle of the server certificate (none)
SUTURE_TASK_QUEUE              task queue the worker polls (``suture``)
PROMETHEUS_URL                 Prometheus base URL (``http://127.0.0.1:9090``)
KUBECONFIG                     kubeconfig path(s); unset means in-cluster or ~/.kube/config
SUTURE_INGRESS_HOST / _PORT    where the ingress listens (``127.0.0.1`` / ``8088``)
SUTURE_DEFAULT_STAGE           stage of a loop nobody has staged yet (``read_only``)
SUTURE_STAGE_PERIODS           days each stage must hold: read_only/dry_run/live_scoped (``30/14/30``)
SUTURE_TELEMETRY_FRESHNESS_S   reliability telemetry lag allowed, scrape to query (``30``)
SUTURE_AUDIT_LAG_S             audit event lag allowed, event time to ingress (``10``)
=============================  ===================================================
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from suture.errors import ConfigError

_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_HOST_PORT = re.compile(r"^\[?[A-Za-z0-9_.:-]+\]?:\d{1,5}$")

ENVIRONMENT = {
    "state_dir": "SUTURE_STATE_DIR",
    "db_url": "SUTURE_DB_URL",
    "audit_key": "SUTURE_AUDIT_KEY",
    "policy_dirs": "SUTURE_POLICY_DIRS",
    "escalation_webhook": "SUTURE_ESCALATION_WEBHOOK",
    "webhook_token": "SUTURE_WEBHOOK_TOKEN",
    "temporal_address": "TEMPORAL_ADDRESS",
    "temporal_namespace": "TEMPORAL_NAMESPACE",
    "temporal_tls_cert": "TEMPORAL_TLS_CERT",
    "temporal_tls_key": "TEMPORAL_TLS_KEY",
    "temporal_tls_ca": "TEMPORAL_TLS_CA",
    "task_queue": "SUTURE_TASK_QUEUE",
    "prometheus_url": "PROMETHEUS_URL",
    "kubeconfig": "KUBECONFIG",
    "ingress_host": "SUTURE_INGRESS_HOST",
    "ingress_port": "SUTURE_INGRESS_PORT",
    "default_stage": "SUTURE_DEFAULT_STAGE",
    "stage_periods": "SUTURE_STAGE_PERIODS",
    "telemetry_freshness_s": "SUTURE_TELEMETRY_FRESHNESS_S",
    "audit_lag_s": "SUTURE_AUDIT_LAG_S",
}
"""Field of :class:`Settings` → the environment variable it is read from."""


def _default_policy_dirs() -> tuple[Path, ...]:
    # Imported here: policies.loading pulls in YAML and the registry, which the
    # settings of a process that never reads policies do not need.
    from policies.loading import default_policy_dir

    return (default_policy_dir(),)


class Settings(BaseModel):
    """Everything a suture process needs to know about where it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state_dir: Path = Field(default_factory=lambda: Path.cwd() / ".suture")
    db_url: str = ""
    audit_key: SecretStr | None = None
    policy_dirs: tuple[Path, ...] = Field(default_factory=_default_policy_dirs)
    escalation_webhook: str | None = None
    webhook_token: str | None = None
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = Field(default="default", min_length=1)
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_ca: Path | None = None
    task_queue: str = Field(default="suture", min_length=1)
    prometheus_url: str = "http://127.0.0.1:9090"
    kubeconfig: str | None = None
    ingress_host: str = Field(default="127.0.0.1", min_length=1)
    ingress_port: int = Field(default=8088, ge=1, le=65535)
    default_stage: str = Field(default="read_only", pattern="^(read_only|dry_run|live_scoped|live)$")
    stage_periods: str = Field(default="30/14/30", pattern=r"^\d+(\.\d+)?/\d+(\.\d+)?/\d+(\.\d+)?$")
    """Days read_only/dry_run/live_scoped must hold before the next stage (see :mod:`suture.stages`)."""
    telemetry_freshness_s: float = Field(default=30.0, gt=0)
    audit_lag_s: float = Field(default=10.0, gt=0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``environ`` (the process environment by default).

        Empty variables count as unset.

        Raises:
            ConfigError: naming the variable whose value is wrong.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field, variable in ENVIRONMENT.items():
            raw = env.get(variable, "").strip()
            if raw:
                values[field] = raw
        if "policy_dirs" in values:
            values["policy_dirs"] = tuple(
                Path(part) for part in str(values["policy_dirs"]).split(os.pathsep) if part.strip()
            )
        try:
            settings = cls.model_validate(values)
        except ValidationError as error:
            raise _config_error(error) from None
        settings._check_files()
        return settings

    @property
    def temporal_tls(self) -> bool:
        return any((self.temporal_tls_cert, self.temporal_tls_key, self.temporal_tls_ca))

    @model_validator(mode="after")
    def _db_url_defaults_to_state_dir(self) -> Settings:
        if not self.db_url:
            path = (self.state_dir / "suture.db").absolute()
            object.__setattr__(self, "db_url", f"sqlite:///{path.as_posix()}")
        return self

    @field_validator("db_url")
    @classmethod
    def _db_url_has_scheme(cls, value: str) -> str:
        if value and not _URL.match(value):
            raise ValueError(
                "must be a SQLAlchemy URL such as sqlite:///path/suture.db or "
                "postgresql+psycopg://user:password@host/suture"
            )
        return value

    @field_validator("audit_key")
    @classmethod
    def _audit_key_is_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters, e.g. the output of `openssl rand -hex 32`")
        return value

    @field_validator("escalation_webhook", "prometheus_url")
    @classmethod
    def _is_http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("http://", "https://")):
            raise ValueError(f"{value!r} must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @field_validator("temporal_address")
    @classmethod
    def _is_host_port(cls, value: str) -> str:
        if not _HOST_PORT.match(value):
            raise ValueError(f"{value!r} must be host:port, e.g. temporal.example.com:7233")
        return value

    def _check_files(self) -> None:
        for directory in self.policy_dirs:
            if not directory.is_dir():
                raise ConfigError(f"SUTURE_POLICY_DIRS: {directory} is not a directory")
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            raise ConfigError("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY must be set together for mTLS")
        for field in ("temporal_tls_cert", "temporal_tls_key", "temporal_tls_ca"):
            path = getattr(self, field)
            if path is not None and not path.is_file():
                raise ConfigError(f"{ENVIRONMENT[field]}: {path} is not a readable file")


def _config_error(error: ValidationError) -> ConfigError:
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    variable = ENVIRONMENT.get(field, field or "settings")
    message = first["msg"].removeprefix("Value error, ")
    return ConfigError(f"{variable}: {message}")
