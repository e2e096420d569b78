"""Is a loop ready to act? The prerequisites inventory, asked of the systems themselves.

The domain texts sequence an adoption by an inventory: every API a loop reads,
whether the team holds write credentials for what it would change, and whether
the data is complete and fresh enough to decide on. Each line here is one such
fact, ``available`` or ``blocked``, with the reason and the fix:

* **read path**: Prometheus, the Kubernetes API, the AWS APIs and the audit event
  source answer; Prometheus keeps enough history (retention, and the oldest
  sample of the utilisation series, ≥ 30 days for the resource loop); the fleet's
  owner/env tags cover ≥ 95% of it; the dependency map is present.
* **write path**: the permissions the loop's registered actions declare, asked
  of the systems rather than assumed: a Kubernetes ``SelfSubjectAccessReview``
  per verb and resource, and ``iam:SimulatePrincipalPolicy`` for the IAM actions
  (AWS has no dry-run for IAM writes, and a DryRun EC2 call would answer for one
  instance only; the simulation answers for the identity's policies as a whole).
  An identity that may not run the simulation gets ``unverified`` lines, not a
  guess.
* **freshness, measured**: the scrape-to-query lag of the telemetry the
  reliability policies read (``time() - timestamp(series)``, the worst series and
  the worst scrape target) against 30 s, and the audit event lag (CloudTrail's
  event time → received by the ingress, per event) against 10 s.

``suture readiness`` runs these directly, without Temporal; the same permission
check is the ``readiness.write_permissions`` activity a run asks before acting,
cached for a minute because permissions rarely change and containment is a race.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import requests
from pydantic import BaseModel, ConfigDict
from temporalio import activity

from policies.actions.declaration import Permissions, RbacRule, registered_actions
from policies.registry import action_spec
from suture.models import Loop, Outcome, PlannedAction
from suture.stages import (
    LIVE_SCOPE,
    Gate,
    PermissionQuery,
    PermissionVerdict,
    Stage,
    StageEvidence,
    StagePeriods,
    StageState,
    gates_for,
)

TELEMETRY_FRESHNESS_S = 30.0
AUDIT_LAG_S = 10.0
MIN_HISTORY_DAYS = 30.0
MIN_TAG_COVERAGE = 0.95
DEPENDENCY_MAP = "dependencies.yaml"
PERMISSION_CACHE_S = 60.0
_METRIC = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_DAYS = {"ms": 1 / 86_400_000, "s": 1 / 86400, "m": 1 / 1440, "h": 1 / 24, "d": 1.0, "w": 7.0, "y": 365.0}


class Status(StrEnum):
    AVAILABLE = "available"
    BLOCKED = "blocked"


class Kind(StrEnum):
    """What a line is about; the stage gates read ``read`` and ``write`` lines."""

    READ = "read"
    WRITE = "write"
    ADVISORY = "advisory"
    """Reported, never a gate (the dependency map, until the graph needs it)."""


class Line(BaseModel):
    """One fact of the inventory."""

    model_config = ConfigDict(extra="forbid")

    check: str
    status: Status
    kind: Kind
    detail: str
    fix: str = ""
    measured: float | None = None
    """The figure behind the line, when there is one (seconds of lag, days, a share)."""


class LoopReadiness(BaseModel):
    model_config = ConfigDict(extra="forbid")

    loop: Loop
    stage: Stage
    stage_since: datetime | None = None
    live_scope: str
    lines: list[Line]

    def blocked(self, kind: Kind) -> list[str]:
        return [f"{line.check}: {line.detail}" for line in self.lines if line.kind == kind and not _ok(line)]


class ReadinessReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checked_at: datetime
    loops: list[LoopReadiness]


def _ok(line: Line) -> bool:
    return line.status == Status.AVAILABLE


def available(check: str, kind: Kind, detail: str, measured: float | None = None) -> Line:
    return Line(check=check, status=Status.AVAILABLE, kind=kind, detail=detail, measured=measured)


def blocked(check: str, kind: Kind, detail: str, fix: str, measured: float | None = None) -> Line:
    return Line(check=check, status=Status.BLOCKED, kind=kind, detail=detail, fix=fix, measured=measured)


# --- write permissions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    """an RBAC verb on a resource (in a namespace or cluster-wide), or an IAM action."""

    rbac: tuple[str, str, str] | None = None
    """(group, resource, verb); ``resource`` may carry a subresource, ``deployments/scale``."""
    namespace: str = ""
    iam: str = ""

    def __str__(self) -> str:
        if self.iam:
            return self.iam
        assert self.rbac is not None
        group, resource, verb = self.rbac
        where = f" in {self.namespace}" if self.namespace else " cluster-wide"
        return f"{verb} {group or 'core'}/{resource}{where}"


def needs_of(permissions: Permissions, namespace: str = "") -> list[Need]:
    """Every (group, resource, verb) and IAM action ``permissions`` declares."""
    needs = [Need(iam=action) for action in permissions.iam]
    for rule in permissions.rbac:
        needs += [Need(rbac=item, namespace=namespace) for item in _expand(rule)]
    return needs


def _expand(rule: RbacRule) -> Iterable[tuple[str, str, str]]:
    for group in rule.api_groups:
        for resource in rule.resources:
            for verb in rule.verbs:
                yield group, resource, verb


class PermissionProbe:
    """Asks Kubernetes and AWS whether the worker's identity may do something.

    Args:
        kube_api: an official Kubernetes API client; None when the worker has no cluster.
        aws_client: makes a boto3 client for ``(service, region)``; None without AWS.
        region: where IAM and STS are asked (both are global).
        ttl_s: how long an answer is reused.
    """

    def __init__(
        self,
        kube_api: Any | None,
        aws_client: Callable[[str, str], Any] | None,
        *,
        region: str = "us-east-1",
        ttl_s: float = PERMISSION_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube_api = kube_api
        self._aws_client = aws_client
        self._region = region
        self._ttl_s = ttl_s
        self._clock = clock
        self._answers: dict[Need, tuple[float, bool | None, str]] = {}
        self._lock = threading.Lock()

    @activity.defn(name="readiness.write_permissions")
    def write_permissions(self, query: PermissionQuery) -> PermissionVerdict:
        """What the actions need and the identity lacks (or nobody could say)."""
        needs = [need for action in query.actions for need in _action_needs(action)]
        verdict = PermissionVerdict()
        for need, (allowed, why) in zip(needs, self.ask(needs), strict=True):
            if allowed is False:
                verdict.missing.append(f"{need} ({why})" if why else str(need))
            elif allowed is None:
                verdict.unverified.append(f"{need}: {why}")
        return verdict

    def ask(self, needs: Sequence[Need]) -> list[tuple[bool | None, str]]:
        """For each need: allowed (True/False, or None when it cannot be asked) and why."""
        now = self._clock()
        fresh = {}
        with self._lock:
            for need in needs:
                cached = self._answers.get(need)
                if cached is not None and now - cached[0] < self._ttl_s:
                    fresh[need] = cached[1:]
        missing = [need for need in dict.fromkeys(needs) if need not in fresh]
        answered = self._ask_kubernetes([n for n in missing if n.rbac]) | self._ask_aws(
            [n for n in missing if n.iam]
        )
        with self._lock:
            for need, answer in answered.items():
                self._answers[need] = (now, *answer)
        fresh.update(answered)
        return [fresh[need] for need in needs]

    def _ask_kubernetes(self, needs: list[Need]) -> dict[Need, tuple[bool | None, str]]:
        if not needs:
            return {}
        if self._kube_api is None:
            return {need: (None, "no Kubernetes configuration") for need in needs}
        from kubernetes.client import (
            AuthorizationV1Api,
            V1ResourceAttributes,
            V1SelfSubjectAccessReview,
            V1SelfSubjectAccessReviewSpec,
        )
        from kubernetes.client.exceptions import ApiException

        api = AuthorizationV1Api(self._kube_api)
        answers: dict[Need, tuple[bool | None, str]] = {}
        for need in needs:
            assert need.rbac is not None
            group, resource, verb = need.rbac
            name, _, subresource = resource.partition("/")
            review = V1SelfSubjectAccessReview(
                spec=V1SelfSubjectAccessReviewSpec(
                    resource_attributes=V1ResourceAttributes(
                        group=group,
                        resource=name,
                        subresource=subresource or None,
                        verb=verb,
                        namespace=need.namespace or None,
                    )
                )
            )
            try:
                status = api.create_self_subject_access_review(review).status
            except ApiException as error:
                answers[need] = (None, f"SelfSubjectAccessReview failed: HTTP {error.status} {error.reason}")
                continue
            except Exception as error:  # an unreachable API: say so, never guess
                answers[need] = (None, f"SelfSubjectAccessReview failed: {error}")
                continue
            allowed = bool(status and status.allowed)
            answers[need] = (allowed, "" if allowed else (status.reason or "denied") if status else "denied")
        return answers

    def _ask_aws(self, needs: list[Need]) -> dict[Need, tuple[bool | None, str]]:
        if not needs:
            return {}
        if self._aws_client is None:
            return {need: (None, "no AWS configuration") for need in needs}
        try:
            arn = self._aws_client("sts", self._region).get_caller_identity()["Arn"]
            results = self._aws_client("iam", self._region).simulate_principal_policy(
                PolicySourceArn=principal_arn(arn), ActionNames=[need.iam for need in needs]
            )["EvaluationResults"]
        except Exception as error:  # botocore's errors, or no credentials at all
            why = f"iam:SimulatePrincipalPolicy could not be asked ({_one_line(error)})"
            return {need: (None, why) for need in needs}
        decisions = {result["EvalActionName"]: result["EvalDecision"] for result in results}
        return {
            need: (decisions.get(need.iam) == "allowed", decisions.get(need.iam, "not evaluated"))
            for need in needs
        }


def principal_arn(caller: str) -> str:
    """The IAM principal behind a caller ARN: an assumed-role session becomes its role."""
    found = re.match(r"^arn:(aws[\w-]*):sts::(\d+):assumed-role/([^/]+)/", caller)
    if found is None:
        return caller
    partition, account, role = found.groups()
    return f"arn:{partition}:iam::{account}:role/{role}"


def _action_needs(action: PlannedAction) -> list[Need]:
    spec = action_spec(action.type)
    return needs_of(spec.permissions, action.target.scope if spec.permissions.rbac else "")


def _one_line(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


# --- the inventory --------------------------------------------------------------------------


@dataclass
class Readiness:
    """The inventory of every loop, from the clients a process's settings name.

    Args:
        store: the audit store (stages, runs, the trail).
        prometheus: a ``PrometheusConnect`` client.
        permissions: asks the systems about write permissions.
        fleet: the resource loop's inventory (``FleetAnalyst``); None without one.
        kube_api, aws_client: for reachability; None when not configured (the reason in ``why_not``).
        policies: every loaded policy (the reliability ones name the telemetry read).
        policy_dirs: where a ``dependencies.yaml`` would sit.
        default_stage: the stage of a loop nobody has staged.
    """

    store: Any
    prometheus: Any
    permissions: PermissionProbe
    fleet: Any | None
    kube_api: Any | None
    aws_client: Callable[[str, str], Any] | None
    policies: Sequence[Any]
    policy_dirs: Sequence[Path]
    default_stage: Stage = Stage.READ_ONLY
    telemetry_freshness_s: float = TELEMETRY_FRESHNESS_S
    audit_lag_s: float = AUDIT_LAG_S
    why_not: dict[str, str] | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def report(self, loops: Sequence[Loop] = tuple(Loop)) -> ReadinessReport:
        return ReadinessReport(checked_at=self.clock(), loops=[self.loop(loop) for loop in loops])

    def loop(self, loop: Loop) -> LoopReadiness:
        state = self.stage(loop)
        checks: dict[Loop, list[Callable[[], Line | list[Line]]]] = {
            Loop.RELIABILITY: [self.prometheus_line, self.kubernetes_line, self.telemetry_line],
            Loop.SECURITY: [self.aws_line, self.audit_source_line],
            Loop.RESOURCE: [
                self.prometheus_line,
                self.kubernetes_line,
                self.aws_line,
                self.retention_line,
                self.history_line,
                self.tag_line,
            ],
        }
        lines: list[Line] = []
        for check in [*checks[loop], lambda: self.write_lines(loop), self.dependency_line]:
            found = check()
            lines += found if isinstance(found, list) else [found]
        return LoopReadiness(
            loop=loop, stage=state.stage, stage_since=state.since, live_scope=LIVE_SCOPE[loop], lines=lines
        )

    def stage(self, loop: Loop) -> StageState:
        state: StageState = self.store.stage(loop, self.default_stage)
        if state.configured:
            return state
        first = self.store.events()[:1]
        return state.model_copy(update={"since": first[0].at if first else None})

    # --- read path -------------------------------------------------------------------------

    def prometheus_line(self) -> Line:
        try:
            self.prometheus.custom_query("vector(1)")
        except Exception as error:
            return blocked(
                "Prometheus",
                Kind.READ,
                f"unreachable at {self.prometheus.url}: {_one_line(error)}",
                "start Prometheus or set PROMETHEUS_URL",
            )
        return available("Prometheus", Kind.READ, f"answers at {self.prometheus.url}")

    def kubernetes_line(self) -> Line:
        if self.kube_api is None:
            why = (self.why_not or {}).get("kubernetes", "no Kubernetes configuration")
            return blocked("Kubernetes API", Kind.READ, why, "set KUBECONFIG or run in-cluster")
        from kubernetes.client import AppsV1Api

        try:
            AppsV1Api(self.kube_api).list_deployment_for_all_namespaces(limit=1)
        except Exception as error:
            return blocked(
                "Kubernetes API",
                Kind.READ,
                f"listing Deployments failed: {_one_line(error)}",
                "check KUBECONFIG and that the identity may list deployments",
            )
        return available("Kubernetes API", Kind.READ, f"answers at {self.kube_api.configuration.host}")

    def aws_line(self) -> Line:
        if self.aws_client is None:
            return blocked(
                "AWS APIs", Kind.READ, "no AWS configuration", "configure the AWS credential chain"
            )
        try:
            arn = self.aws_client("sts", "us-east-1").get_caller_identity()["Arn"]
        except Exception as error:
            return blocked(
                "AWS APIs",
                Kind.READ,
                f"sts:GetCallerIdentity failed: {_one_line(error)}",
                "configure the AWS credential chain (AWS_PROFILE, IRSA, instance role)",
            )
        return available("AWS APIs", Kind.READ, f"answer as {arn}")

    def audit_source_line(self) -> Line:
        """Audit events of the last day, and their lag from CloudTrail's event time to the ingress."""
        lags = self.audit_lags(timedelta(days=1))
        bound = self.audit_lag_s
        if not lags:
            return blocked(
                "audit event source",
                Kind.READ,
                "no audit event reached the ingress in the last 24 h",
                "route CloudTrail via EventBridge to POST /events/aws (or run the ingress with --sqs-queue)",
            )
        worst, p90 = max(lags), _percentile(lags, 0.9)
        detail = (
            f"{len(lags)} events in 24 h; lag event time → ingress p90 {p90:.1f}s, max {worst:.1f}s "
            f"(bound {bound:g}s)"
        )
        if p90 > bound:
            return blocked(
                "audit event lag",
                Kind.READ,
                detail,
                "deliver CloudTrail through EventBridge rather than from S3 log files; check the SQS poller",
                measured=p90,
            )
        return available("audit event lag", Kind.READ, detail, measured=p90)

    def audit_lags(self, window: timedelta) -> list[float]:
        """Per security run in ``window``: seconds from the event's time to the ingress receiving it."""
        since = self.clock() - window
        received = {
            run.workflow_id: run.timeline.detected
            for run in self.store.runs(since=since, loop=Loop.SECURITY)
            if run.timeline.detected is not None
        }
        lags = []
        for entry in self.store.events_at("detected", since=since, loop=Loop.SECURITY):
            at = received.get(entry.workflow_id)
            if at is not None and entry.evidence:
                lags.append(max((at - entry.evidence[0].at).total_seconds(), 0.0))
        return lags

    def telemetry_line(self) -> Line:
        """The scrape-to-query lag of what the reliability policies read, and of every scrape target."""
        names = sorted(self.telemetry_metrics())
        queries = ["max(time() - timestamp(up))"]
        # One query per metric: timestamp() gives scrape times only of a plain selector, and
        # drops the name, so several metrics in one selector would collide on their labels.
        queries += [f"max(time() - timestamp({name}))" for name in names]
        try:
            lags = [self._scalar(query) for query in queries]
        except Exception as error:
            return blocked(
                "telemetry freshness",
                Kind.READ,
                f"could not measure: {_one_line(error)}",
                "start Prometheus or set PROMETHEUS_URL",
            )
        measured = [lag for lag in lags if lag is not None]
        if not measured:
            return blocked(
                "telemetry freshness",
                Kind.READ,
                "no series to measure (nothing scraped yet)",
                "scrape the services the reliability policies watch",
            )
        worst, bound = max(measured), self.telemetry_freshness_s
        read = f"{len(names)} metrics the reliability policies read" if names else "scrape targets"
        detail = f"scrape → query lag {worst:.1f}s at worst over {read} (bound {bound:g}s)"
        if worst > bound:
            return blocked(
                "telemetry freshness",
                Kind.READ,
                detail,
                "shorten scrape intervals or the pipeline's delay (remote write, federation, caches)",
                measured=worst,
            )
        return available("telemetry freshness", Kind.READ, detail, measured=worst)

    def telemetry_metrics(self) -> set[str]:
        """Metric names in the reliability policies' evidence and verify queries."""
        names: set[str] = set()
        for policy in self.policies:
            if policy.loop != Loop.RELIABILITY:
                continue
            texts = [*getattr(policy, "evidence", []), getattr(getattr(policy, "verify", None), "query", "")]
            for text in texts:
                names.update(_METRIC.findall(str(text)))
        return names

    def retention_line(self) -> Line:
        try:
            response = requests.get(f"{self.prometheus.url}/api/v1/status/runtimeinfo", timeout=5)
            response.raise_for_status()
            info = response.json()
        except Exception as error:
            return blocked(
                "Prometheus retention",
                Kind.READ,
                f"runtime info unavailable: {_one_line(error)}",
                "start Prometheus or set PROMETHEUS_URL",
            )
        text = str(info.get("data", {}).get("storageRetention", ""))
        days = retention_days(text)
        detail = f"storage retention {text or 'unknown'}"
        if days is not None and days < MIN_HISTORY_DAYS:
            return blocked(
                "Prometheus retention",
                Kind.READ,
                f"{detail}, fewer than {MIN_HISTORY_DAYS:g} days",
                "run Prometheus with --storage.tsdb.retention.time=45d (or long-term storage)",
                measured=days,
            )
        return available("Prometheus retention", Kind.READ, detail, measured=days)

    def history_line(self) -> Line:
        metric = getattr(self.fleet, "metric", "suture:utilisation:ratio1h")
        try:
            samples = self._scalar(f"max(count_over_time({metric}[60d]))")
        except Exception as error:
            return blocked(
                "utilisation history",
                Kind.READ,
                f"could not read {metric}: {_one_line(error)}",
                "start Prometheus or set PROMETHEUS_URL",
            )
        if samples is None:
            return blocked(
                "utilisation history",
                Kind.READ,
                f"no {metric} series",
                "add the recording rules in the README",
            )
        days = samples / 24.0
        detail = f"oldest sample of {metric} is {days:.1f} days old (at least {MIN_HISTORY_DAYS:g})"
        if days < MIN_HISTORY_DAYS:
            return blocked(
                "utilisation history", Kind.READ, detail, "wait, or backfill the history", measured=days
            )
        return available("utilisation history", Kind.READ, detail, measured=days)

    def tag_line(self) -> Line:
        try:
            workloads = self.workloads()
        except Exception as error:
            return blocked(
                "owner/env tags",
                Kind.READ,
                f"inventory failed: {_one_line(error)}",
                "grant ec2:DescribeInstances and list on deployments",
            )
        if not workloads:
            return blocked("owner/env tags", Kind.READ, "no workloads found", "check the inventory's regions")
        tagged = sum(workload.tagged for workload in workloads)
        coverage = tagged / len(workloads)
        detail = (
            f"{tagged} of {len(workloads)} workloads tagged = {coverage:.1%} "
            f"(at least {MIN_TAG_COVERAGE:.0%})"
        )
        if coverage < MIN_TAG_COVERAGE:
            return blocked(
                "owner/env tags",
                Kind.READ,
                detail,
                "tag the untagged resources with owner and env (the sweep's escalation lists them)",
                measured=coverage,
            )
        return available("owner/env tags", Kind.READ, detail, measured=coverage)

    def workloads(self) -> list[Any]:
        return list(self.fleet.inventory({})) if self.fleet is not None else []

    def dependency_line(self) -> Line:
        for directory in self.policy_dirs:
            if (directory / DEPENDENCY_MAP).is_file():
                return available("dependency map", Kind.ADVISORY, f"{directory / DEPENDENCY_MAP}")
        return blocked(
            "dependency map",
            Kind.ADVISORY,
            "not configured",
            f"write {DEPENDENCY_MAP} beside the policies (service → the services it calls)",
        )

    # --- write path ------------------------------------------------------------------------

    def write_lines(self, loop: Loop) -> list[Line]:
        lines = []
        for spec in registered_actions():
            if spec.loop != loop:
                continue
            needs = needs_of(spec.permissions)
            answers = self.permissions.ask(needs)
            missing = [
                f"{need} ({why or 'denied'})"
                for need, (ok, why) in zip(needs, answers, strict=True)
                if ok is False
            ]
            unknown = [f"{need}: {why}" for need, (ok, why) in zip(needs, answers, strict=True) if ok is None]
            check = f"write {spec.name}"
            if not needs:
                described = spec.permissions.describe() or "nothing"
                lines.append(
                    available(check, Kind.WRITE, f"no IAM or RBAC permission to ask (declares {described})")
                )
                continue
            if missing:
                lines.append(
                    blocked(
                        check,
                        Kind.WRITE,
                        "lacks " + "; ".join(missing),
                        "grant what `suture permissions --iam|--rbac` prints to the worker's identity",
                    )
                )
            elif unknown:
                lines.append(
                    blocked(
                        check,
                        Kind.WRITE,
                        "unverified: " + "; ".join(unknown),
                        "let the identity run SelfSubjectAccessReview and iam:SimulatePrincipalPolicy",
                    )
                )
            else:
                lines.append(
                    available(
                        check, Kind.WRITE, f"holds {len(needs)} permissions: {spec.permissions.describe()}"
                    )
                )
        return lines

    # --- stage evidence --------------------------------------------------------------------

    def evidence(
        self, loop: Loop, periods: StagePeriods, inventory: LoopReadiness | None = None
    ) -> StageEvidence:
        """What the gates of ``loop``'s next stage are judged on, measured now."""
        inventory = inventory or self.loop(loop)
        state = self.stage(loop)
        now = self.clock()
        held = (now - state.since).total_seconds() / 86400 if state.since else 0.0
        # Rates are per day: the window is the stage's period, at least a day, never before the stage began.
        period = timedelta(days=max(periods.of(state.stage), 1.0))
        since = max(now - period, state.since) if state.since else now - period
        runs = self.store.runs(since=since, loop=loop)
        per_day: dict[str, int] = {}
        for run in runs:
            if run.outcome == Outcome.DRY_RUN:
                day = (run.timeline.closed or run.timeline.detected or now).date().isoformat()
                per_day[day] = per_day.get(day, 0) + 1
        attempted = [run for run in runs if run.outcome not in (Outcome.DRY_RUN, Outcome.SUPPRESSED)]
        resolved = sum(run.outcome == Outcome.RESOLVED for run in attempted)
        try:
            workloads = len(self.workloads())
        except Exception:
            workloads = 0
        return StageEvidence(
            held_days=held,
            read_blocked=inventory.blocked(Kind.READ),
            write_blocked=inventory.blocked(Kind.WRITE),
            logged_per_day=sorted(per_day.items()),
            workloads=workloads,
            closure=(resolved, len(attempted)),
        )

    def gates(self, loop: Loop, periods: StagePeriods) -> tuple[StageState, list[Gate]]:
        state = self.stage(loop)
        return state, gates_for(state.stage, self.evidence(loop, periods), periods)

    def _scalar(self, query: str) -> float | None:
        result = self.prometheus.custom_query(query)
        if not result:
            return None
        return float(result[0]["value"][1])


class StageRefused(Exception):
    """``suture stage advance`` found a gate that does not hold."""

    def __init__(self, loop: Loop, stage: Stage, failing: list[Gate]) -> None:
        self.failing = failing
        reasons = "; ".join(f"{gate.name}: {gate.detail} (fix: {gate.fix})" for gate in failing)
        super().__init__(f"the {loop} loop stays at {stage}: {reasons}")


def advance(
    readiness: Readiness, loop: Loop, periods: StagePeriods, by: str, *, force: bool = False, reason: str = ""
) -> tuple[StageState, list[Gate]]:
    """Move ``loop`` to its next stage when every gate holds (or ``force``, audited with the failing gates).

    Raises:
        StageRefused: a gate does not hold and ``force`` is false; or the loop is ``live`` already.
    """
    state, gates = readiness.gates(loop, periods)
    target = state.stage.following
    if target is None:
        raise StageRefused(loop, state.stage, [Gate("stage", False, "already live", "nothing to advance")])
    failing = [gate for gate in gates if not gate.passed]
    if failing and not force:
        raise StageRefused(loop, state.stage, failing)
    note = reason
    if failing:
        forced = "; ".join(f"{gate.name}: {gate.detail}" for gate in failing)
        note = f"forced past failing gates ({forced})" + (f": {reason}" if reason else "")
    return readiness.store.set_stage(loop, target, by=by, reason=note), gates


def retention_days(text: str) -> float | None:
    """Prometheus's ``storageRetention`` (``15d``, ``45d or 10GiB``, ``1y2w``) in days; None if size-only."""
    time_part = text.split(" or ")[0].strip()
    found = _DURATION.findall(time_part)
    if not found:
        return None
    return sum(float(number) * _DAYS[unit] for number, unit in found)


def _percentile(values: Sequence[float], share: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]
