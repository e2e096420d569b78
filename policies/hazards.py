"""Checks a schema cannot express: settings that surprise, and queries Prometheus would refuse.

Each policy is already valid on its own terms here; these checks look at what it
would do. A dangerous setting (:class:`~policies.schema.Risk`) is an error unless
the policy names it under ``acknowledge:``. Every PromQL query is parsed with
``promql-parser`` (a Rust port of Prometheus's own parser), placeholders filled
with a sample value, so a typo fails ``suture policy check`` and the worker's
start instead of a verification at 3 a.m.

Each problem carries its location inside the policy (a path such as
``("verify", "window")``), which the loader turns into ``file:line``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import promql_parser

from policies.models import Policy, ReliabilityPolicy
from policies.queries import build_query, check_template
from policies.schema import Risk
from policies.security_policy import SecurityPolicy
from suture.models import Mode

MAX_SANE_REPLICAS = 100
"""The largest ``max_replicas`` a policy may name without acknowledging ``large_scale_limit``."""

_ACTING = (Mode.SUPERVISED, Mode.AUTONOMOUS)

Location = tuple[str | int, ...]


@dataclass(frozen=True)
class Hazard:
    """Something wrong with a policy, where it is inside the policy, and what to do."""

    location: Location
    message: str


def hazards(policy: Policy) -> list[Hazard]:
    """Every unacknowledged risky setting and every query that is not valid PromQL."""
    found = []
    if isinstance(policy, ReliabilityPolicy | SecurityPolicy):  # the kinds that can acknowledge
        found = [
            Hazard(location, f"{message}; if that is intended, add `acknowledge: [{risk}]` to the policy")
            for risk, location, message in _risks(policy)
            if risk not in policy.acknowledge
        ]
    return found + list(_promql_problems(policy))


def _risks(policy: Any) -> Iterator[tuple[Risk, Location, str]]:
    mode = getattr(policy, "mode", None)
    if mode == Mode.AUTONOMOUS and _catch_all(policy):
        yield Risk.CATCH_ALL_AUTONOMOUS, ("match",), "mode autonomous with a match that accepts everything"
    if mode == Mode.AUTONOMOUS and isinstance(policy, ReliabilityPolicy) and policy.min_confidence == 0:
        yield Risk.NO_CONFIDENCE_FLOOR, ("min_confidence",), "mode autonomous acting at any confidence"
    if mode == Mode.AUTONOMOUS and isinstance(policy, SecurityPolicy) and policy.risk.act_at == 0:
        yield Risk.NO_CONFIDENCE_FLOOR, ("risk", "act_at"), "mode autonomous acting at any risk"
    if mode in _ACTING and getattr(policy, "cooldown", None) == 0:
        yield Risk.ZERO_COOLDOWN, ("cooldown",), "cooldown 0 lets the same target be changed again at once"
    verify = getattr(policy, "verify", None)
    if mode in _ACTING and getattr(verify, "window", None) == 0:
        yield (
            Risk.ZERO_VERIFICATION_WINDOW,
            ("verify", "window"),
            "a verification window of 0 judges the result before the change can show",
        )
    for index, step in enumerate(getattr(policy, "actions", [])):
        limit = step.params.get("max_replicas")
        if isinstance(limit, int | float) and limit > MAX_SANE_REPLICAS:
            yield (
                Risk.LARGE_SCALE_LIMIT,
                ("actions", index, "params", "max_replicas"),
                f"max_replicas {limit} is above {MAX_SANE_REPLICAS}",
            )


def _catch_all(policy: Any) -> bool:
    if isinstance(policy, ReliabilityPolicy):
        return policy.match.alertname is None and not policy.match.labels
    if isinstance(policy, SecurityPolicy):
        return "*" in policy.match.accounts and not policy.match.signals and not policy.match.regions
    return False


def _promql_problems(policy: Policy) -> Iterator[Hazard]:
    if not isinstance(policy, ReliabilityPolicy):
        return
    queries: list[tuple[Location, str]] = [
        (("evidence", i), query) for i, query in enumerate(policy.evidence)
    ]
    queries.append((("verify", "query"), policy.verify.query))
    for location, template in queries:
        problem = promql_problem(template)
        if problem:
            yield Hazard(location, f"not valid PromQL: {problem}")


def promql_problem(template: str) -> str | None:
    """Why ``template`` (placeholders filled with a sample value) is not valid PromQL, or None."""
    sample = {label: "sample" for label in check_template(template)}
    try:
        promql_parser.parse(build_query(template, sample))
    except ValueError as error:
        return str(error).splitlines()[0] if str(error) else "the parser refused it"
    return None
