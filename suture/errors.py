"""One root error type, so callers can catch everything suture raises.

SutureError
├── ConfigError        a setting is missing or wrong; the message names it
├── PolicyError        a policy file does not validate; carries file:line
└── ActionError        an action cannot run against this target
    └── TargetNotFound the resource named by the alert or event does not exist
"""


class SutureError(Exception):
    """Root of every error suture raises on purpose."""


class ConfigError(SutureError):
    """A setting is missing or invalid."""


class PolicyError(SutureError):
    """A policy does not validate.

    Attributes:
        location: ``file:line`` of the offending key when it is known.
    """

    def __init__(self, message: str, location: str | None = None) -> None:
        super().__init__(f"{location}: {message}" if location else message)
        self.location = location


class ActionError(SutureError):
    """An action cannot be carried out against its target."""


class TargetNotFound(ActionError):
    """The resource an action names does not exist."""
