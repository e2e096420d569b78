"""What the trust commands of ``suture`` do: promotions, promote, feedback, exceptions, rebuild.

Each function takes the audit store (and the policy set where the policy decides)
and returns plain data for the CLI to print; every write is audited by the store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from policies.models import Policy
from policies.registry import action_spec
from policies.trust import Feedback, Promotion, Trust, promotion_for
from suture import trust_store
from suture.errors import SutureError
from suture.models import Loop, Mode
from suture.store import AuditStore


def promotions(store: AuditStore, policies: list[Policy]) -> list[Promotion]:
    """For every action class of every policy: whether its track record earns the next rung."""
    records = trust_store.track_records(store)
    overrides = {(o.policy, o.action): Mode(o.mode) for o in trust_store.overrides(store)}
    found = []
    for policy in policies:
        trust = policy.trust or Trust()
        for action in dict.fromkeys(step.type for step in policy.actions):
            current = overrides.get((policy.name, action), policy.mode)
            mine = [r for r in records if r.policy == policy.name and r.action == action]
            found.append(promotion_for(policy.name, action, current, mine, trust))
    return found


def promote(
    store: AuditStore, policies: list[Policy], policy: str, action: str, by: str, reason: str
) -> Promotion:
    """Run ``action`` of ``policy`` autonomously from now on; refused unless it is supervised now.

    Raises:
        SutureError: no such policy or action, or the class is not supervised.
    """
    chosen = next((p for p in policies if p.name == policy), None)
    if chosen is None:
        raise SutureError(f"no policy {policy!r}; `suture policy promotions` lists them")
    if action not in {step.type for step in chosen.actions}:
        raise SutureError(f"policy {policy} has no action {action!r}")
    [standing] = [p for p in promotions(store, [chosen]) if p.action == action]
    if standing.current != Mode.SUPERVISED:
        raise SutureError(
            f"{action} of {policy} is {standing.current}: only supervised → autonomous is a promotion "
            "(dry_run → supervised is a policy edit, it needs approvers)"
        )
    why = reason or standing.why
    trust_store.promote(store, action_spec(action).loop, policy, action, by, why)
    return standing


def feedback(store: AuditStore, run: str, by: str, verdict: str, note: str) -> list[str]:
    try:
        judged = Feedback(verdict)
    except ValueError:
        raise SutureError(f"feedback is useful, wrong or unnecessary, not {verdict!r}") from None
    try:
        return trust_store.record_feedback(store, run, by, judged, note)
    except ValueError as error:
        raise SutureError(str(error)) from None


def parse_until(text: str) -> datetime:
    """A date (``2026-12-01``) or date and time, read as UTC when it names no zone."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise SutureError(
            f"--until {text!r} is not a date; write it like 2026-12-01 or 2026-12-01T18:00"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def exception_rows(store: AuditStore) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [row._asdict() for row in trust_store.exceptions(store, now)]


def loop_of_target(target: str) -> Loop:
    """The loop whose trail records an exception: AWS targets are scoped by a 12-digit account."""
    scope = target.split("/", 1)[0]
    return Loop.SECURITY if scope.isdigit() and len(scope) == 12 else Loop.RELIABILITY
