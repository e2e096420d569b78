"""One root error type, and the one list of failure types activities report to Temporal.

An activity that fails tells Temporal two things: the failure's *type* (a name
that retry policies and workflows test) and whether a retry can help. Both come
from this module, so a name is never typed twice and a retry policy can never
disagree with the activity about what is permanent::

    SutureError                 root of everything suture raises on purpose
    ├── ConfigError             a setting is missing or wrong; the message names it
    ├── PolicyError             a policy does not validate; carries file:line          permanent
    ├── NotAuthorised           a person the run's pinned policy does not list          permanent
    ├── ActionError             an action cannot succeed as asked                       permanent
    │   ├── TargetNotFound      the resource named by the alert or event does not exist
    │   ├── PermissionDenied    the worker's identity lacks a permission; names it
    │   ├── ChangedSinceAction  someone changed the target after suture acted; undo stops
    │   ├── PrometheusQueryRejected   a query Prometheus refuses (syntax, range vector)
    │   └── EscalationRefused   the escalation channel refuses the briefing (4xx)
    └── Unavailable             a dependency is down, slow or throttling                 retried
        ├── AwsUnavailable
        ├── KubernetesApiError  an API answer a retry can fix (409, 429, 5xx)
        ├── KubernetesUnreachable
        ├── PrometheusUnavailable
        └── EscalationUnavailable

Activities raise ``SomeError.failure("what happened and what to do")`` — an
:class:`~temporalio.exceptions.ApplicationError` whose type is the class name and
whose ``non_retryable`` flag is the class's — ``from`` the original error, so the
cause travels with the failure. Pure code raises the classes themselves;
:func:`as_failure` turns one into the activity failure at the boundary. Retry
policies take :data:`NON_RETRYABLE` as their ``non_retryable_error_types``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from temporalio.exceptions import ActivityError, ApplicationError


class SutureError(Exception):
    """Root of every error suture raises on purpose.

    Attributes:
        retryable: whether an activity that fails this way should be tried again.
    """

    retryable: ClassVar[bool] = False

    @classmethod
    def failure(cls, message: str, *, next_retry_delay: timedelta | None = None) -> ApplicationError:
        """The activity failure of this type; raise it ``from`` the original error.

        Args:
            message: one line naming the problem and the fix.
            next_retry_delay: when the dependency said how long to wait (``Retry-After``).
        """
        return ApplicationError(
            message, type=cls.__name__, non_retryable=not cls.retryable, next_retry_delay=next_retry_delay
        )

    @classmethod
    def matches(cls, error: BaseException) -> bool:
        """Whether ``error`` (an activity failure, as a workflow or a caller sees it) is of this type."""
        if isinstance(error, ActivityError):
            error = error.cause or error
        if not isinstance(error, ApplicationError) or error.type is None:
            return False
        found = FAILURES.get(error.type)
        return found is not None and issubclass(found, cls)


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


class NotAuthorised(SutureError):
    """A person asked for something (an undo) that the run's pinned policy does not let them do."""


class ActionError(SutureError):
    """An action cannot be carried out against its target as asked; retrying will not help."""


class TargetNotFound(ActionError):
    """The resource an action names does not exist."""


class PermissionDenied(ActionError):
    """The worker's identity lacks a permission; the message names it (``suture permissions``)."""


class ChangedSinceAction(ActionError):
    """The target changed after suture acted, so an undo would overwrite someone else's change."""


class PrometheusQueryRejected(ActionError):
    """Prometheus refuses the query itself."""


class EscalationRefused(ActionError):
    """The escalation channel refuses the briefing; its answer will not improve by retrying."""


class Unavailable(SutureError):
    """A dependency is unreachable, overloaded or throttling; Temporal retries with backoff."""

    retryable = True


class AwsUnavailable(Unavailable):
    """AWS throttles, answers 5xx, or cannot be reached."""


class KubernetesApiError(Unavailable):
    """The Kubernetes API gave an answer a retry can fix (conflict, throttling, 5xx)."""


class KubernetesUnreachable(Unavailable):
    """The Kubernetes API cannot be reached."""


class PrometheusUnavailable(Unavailable):
    """Prometheus cannot be reached or answers 5xx."""


class EscalationUnavailable(Unavailable):
    """The escalation channel cannot be reached, or asks to be tried later."""


def _failure_types(root: type[SutureError]) -> dict[str, type[SutureError]]:
    found = {root.__name__: root}
    for child in root.__subclasses__():
        found.update(_failure_types(child))
    return found


FAILURES: dict[str, type[SutureError]] = _failure_types(SutureError)
"""Every failure type by the name Temporal carries."""

NON_RETRYABLE: list[str] = sorted(name for name, kind in FAILURES.items() if not kind.retryable)
"""Failure types a retry policy must not retry."""


def as_failure(error: SutureError) -> ApplicationError:
    """The activity failure for an error pure code raised; raise it ``from error``."""
    return type(error).failure(str(error))
