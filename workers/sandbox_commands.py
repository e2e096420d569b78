"""The CLI's one way into the drill sandbox: ``suture demo``, ``drill``, ``bench`` and ``up --sandbox``.

The product never imports ``sandbox``, and a production install does not even
have the sandbox's dependencies (moto, kmock, pytest-httpserver come with the
``sandbox`` extra). These commands are the exception. Every import of ``sandbox``
they need is in this module, for two reasons: the import-linter contract "the
product never imports its sandbox" (pyproject.toml) can name this one small
module as its exception instead of the whole CLI, and a missing extra is reported
in one place, as one line, before anything starts.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from suture.config import Settings
from suture.errors import ConfigError
from workers.embedded import EmbeddedStack

CONTROL_FILE = "sandbox.json"
"""Written by the running ``suture up --sandbox`` beside its state: its control URL and token."""
SANDBOX_EXTRA = ("kmock", "moto", "pytest_httpserver")
"""Modules only the ``sandbox`` extra installs."""


class SandboxNotInstalled(ConfigError):
    """A sandbox command ran on an install without the ``sandbox`` extra."""


def require_sandbox() -> None:
    """Check that the ``sandbox`` extra is installed.

    Raises:
        SandboxNotInstalled: naming the extra to install and the modules that are missing.
    """
    missing = [name for name in SANDBOX_EXTRA if not _installed(name)]
    if missing:
        raise SandboxNotInstalled(
            "the drill sandbox needs the sandbox extra: pip install 'suture[sandbox]' "
            f"(missing: {', '.join(missing)})"
        )


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # an import hook refused it, or a half-removed module
        return False


def all_drills() -> dict[str, Any]:
    """Every drill by name."""
    require_sandbox()
    from sandbox.runner import all_drills as drills

    return drills()


async def run_drills(
    names: list[str] | None, progress: Callable[[str], Any] | None = None, keep: Path | None = None
) -> Any:
    """Run drills (all when ``names`` is None) on a fresh sandbox stack; the demo report.

    ``keep`` keeps the stack's state (Temporal, audit store) in that folder afterwards.
    """
    require_sandbox()
    from sandbox.runner import run_drills as run

    return await run(names, progress=progress, keep=keep)


def benchmarks() -> dict[str, Callable[..., Any]]:
    """Every benchmark by name; each refuses, as one line, an option it does not take."""
    require_sandbox()
    from sandbox.bench import BENCHMARKS

    return {name: _checked(name, benchmark) for name, benchmark in BENCHMARKS.items()}


def _checked(name: str, benchmark: Callable[..., Any]) -> Callable[..., Any]:
    """``benchmark``, raising :class:`ConfigError` for an option (``--workers``, ``--rate``) it lacks."""
    import inspect

    parameters = inspect.signature(benchmark).parameters
    named = {key for key, p in parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}

    def call(**options: Any) -> Any:
        unknown = sorted(key for key, value in options.items() if value is not None and key not in named)
        if unknown:
            flags = ", ".join(f"--{key}" for key in unknown)
            raise ConfigError(f"benchmark {name} takes no {flags}")
        return benchmark(**{key: value for key, value in options.items() if value is not None})

    return call


def sandbox_stack(
    settings: Settings, state_dir: Path, *, ui_port: int, temporal_port: int, ingress_port: int
) -> EmbeddedStack:
    """The stack of ``suture up --sandbox``: the embedded one with the living drill estate.

    Its services are deployed and healthy; ``suture sandbox fire`` breaks one.
    Briefings go to the policies' Slack-format receiver and where ``suture up``
    sends them (the webhook, else the log), not to the drills' inbox, so a person
    running it sees them.
    """
    require_sandbox()
    from sandbox.living import LivingStack

    return LivingStack(
        state_dir,
        ui_port=ui_port,
        sandbox=True,
        settings=settings,
        temporal_port=temporal_port,
        ingress_port=ingress_port,
        inbox=False,
    )


def _control(settings: Settings) -> tuple[str, str]:
    """Where the running sandbox listens and its token, from the file it wrote at start."""
    path = settings.state_dir / "embedded" / CONTROL_FILE
    try:
        control = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SandboxNotRunning(
            f"no running sandbox found ({path} is missing): start one with `suture up --sandbox` "
            "in this folder (or set SUTURE_STATE_DIR to its state folder)"
        ) from None
    return str(control["url"]).rstrip("/"), str(control["token"])


class SandboxNotRunning(ConfigError):
    """``suture sandbox fire`` without a running ``suture up --sandbox``."""


async def sandbox_request(settings: Settings, method: str, path: str, body: Any = None) -> Any:
    """Ask the running sandbox's control endpoint; its answer as JSON.

    Raises:
        SandboxNotRunning: no sandbox, or it does not answer.
        ConfigError: it refused the request (an unknown scenario), with its reason.
    """
    import httpx

    url, token = _control(settings)
    try:
        async with httpx.AsyncClient(timeout=60.0) as client:
            response = await client.request(
                method, f"{url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}
            )
    except httpx.TransportError as error:
        raise SandboxNotRunning(
            f"the sandbox at {url} does not answer ({error}); is `suture up --sandbox` still running?"
        ) from None
    if response.status_code >= 400:
        raise ConfigError(response.text)
    return response.json()
