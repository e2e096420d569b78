"""The ``containment`` benchmark: audit event received → credential disabled.

Before the clock starts, moto gets one IAM user with one access key per event,
each key with a short routine history in the trail (office addresses, routine
APIs, ending two hours ago), and then each key is leaked: a real ``ListBuckets``
call signed with it from an unknown address with an unfamiliar user agent, whose
CloudTrail record is written to the trail as :meth:`MotoSandbox.call_as` does.
Seeding runs on two threads, each with its own boto3 session.

The CloudTrail records of those calls then go to ``POST /events/aws`` as
EventBridge envelopes at a fixed rate, one event per key, so every run contains
its own key and no target lock or cooldown is shared between runs. About one
event in twenty is posted twice at once, as a redelivery would: the second
delivery must find the first run, and no key may be deactivated twice.

Measured per run: from the ingress's arrival stamp (``received_at``, the run's
``timeline.detected``) to the moment the key was deactivated (the ``at`` of the
``credential disabled`` evidence of the deactivation's ``acted`` audit entry).
Every run is awaited until it closes (the verification window included) before
the figures are read; afterwards every key's status is read back from moto.
``duplicate_runs`` counts runs Temporal started beyond one per accepted event and
``duplicate_actions`` deactivations beyond one per key in the audit store; a
second run would also meet the key's lock or cooldown, so the first is the
stricter check. Figures, never assertions.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import httpx
from botocore.config import Config

from sandbox.aws import ADMIN, Actor, AwsEstate, MotoSandbox, cloudtrail_record, envelope
from sandbox.bench_figures import results as bounded_results
from sandbox.bench_figures import sampled_round_trips
from sandbox.bench_stack import BenchStack, on_fresh_bench_stack
from sandbox.security_drills import INTRUDER, INTRUDER_AGENT, OFFICE, ROUTINE
from sandbox.stack import SANDBOX_POLICIES
from suture.models import AuditEntry, LoopResult

DEACTIVATE = "iam.deactivate_access_key"
DISABLED_NOTE = "credential disabled"
"""How the deactivation's evidence starts its note (see :mod:`activities.aws`)."""
DUPLICATE_EVERY = 20
"""One event in this many is delivered twice."""
SEED_THREADS = 4
"""Seeding threads; moto answers from its own process."""
TRAIL_BATCH = 400
"""Records per ``PutLogEvents`` call, well under its 1 MB limit."""
RUN_TIMEOUT_S = 600.0
Progress = Callable[[str], Any] | None


# --- pure helpers -----------------------------------------------------------------------------


def routine_history(actor: Actor, end: datetime, days: int = 2, per_day: int = 2) -> list[dict[str, Any]]:
    """CloudTrail records of ``actor``'s routine work from the office, the newest at ``end``."""
    records = []
    for day in range(days):
        for n in range(per_day):
            service, operation = ROUTINE[(day + n) % len(ROUTINE)]
            records.append(
                cloudtrail_record(
                    actor,
                    service,
                    operation,
                    {},
                    {},
                    "",
                    at=end - timedelta(days=day, hours=n * 3),
                    source_ip=OFFICE[(day + n) % len(OFFICE)],
                    user_agent="aws-cli/2.15.0",
                )
            )
    return records


def leaked_key_call(actor: Actor, at: datetime) -> dict[str, Any]:
    """The CloudTrail record of reconnaissance with ``actor``'s key from an unknown address."""
    return cloudtrail_record(
        actor, "s3", "ListBuckets", {}, {}, "", at=at, source_ip=INTRUDER, user_agent=INTRUDER_AGENT
    )


def duplicated(count: int, every: int = DUPLICATE_EVERY) -> set[int]:
    """Indices of the events delivered twice: one in ``every``, spread evenly, at least one."""
    if count <= 0:
        return set()
    return set(range(min(every // 2, count - 1), count, every))


def disabled_at(entries: Iterable[AuditEntry]) -> datetime | None:
    """When a run's deactivation disabled its key, from the evidence of its ``acted`` entry."""
    for entry in entries:
        if entry.step != "acted" or not entry.detail.startswith(DEACTIVATE):
            continue
        for evidence in entry.evidence:
            if evidence.source == "aws.iam" and evidence.note.startswith(DISABLED_NOTE):
                return evidence.at
    return None


def containment_seconds(result: LoopResult, entries: Iterable[AuditEntry]) -> float | None:
    """Seconds from the event's arrival at the ingress to its key being disabled, if it was."""
    disabled = disabled_at(entries)
    if disabled is None or result.timeline.detected is None:
        return None
    return (disabled - result.timeline.detected).total_seconds()


def repeats(values: Iterable[str]) -> int:
    """How many values occur beyond their first occurrence."""
    return sum(n - 1 for n in Counter(values).values())


def nearest_rank(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``fraction`` of ``values`` at or below it.

    The rank is ``ceil(fraction * n)``; the product is rounded first so that float noise
    (0.07 * 100 is 7.000000000000001) cannot push it up a rank.
    """
    ordered = sorted(values)
    rank = math.ceil(round(fraction * len(ordered), 9))
    return ordered[min(max(rank, 1), len(ordered)) - 1]


def summary(seconds: list[float]) -> dict[str, float | None]:
    """p50/p99 (nearest rank), max and mean, in seconds."""
    if not seconds:
        return {"p50_s": None, "p99_s": None, "max_s": None, "mean_s": None}
    return {
        "p50_s": round(nearest_rank(seconds, 0.50), 4),
        "p99_s": round(nearest_rank(seconds, 0.99), 4),
        "max_s": round(max(seconds), 4),
        "mean_s": round(statistics.fmean(seconds), 4),
    }


# --- seeding and reading moto -------------------------------------------------------------------


class _Clients:
    """boto3 clients on worker threads: one session per thread, as sessions are not thread-safe."""

    def __init__(self, aws: MotoSandbox) -> None:
        self.aws = aws
        self._local = threading.local()
        self._config = Config(retries={"max_attempts": 3})

    def __call__(self, service: str, actor: Actor | None = None) -> Any:
        if actor is None and service in getattr(self._local, "admin", {}):
            return self._local.admin[service]
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = boto3.Session(region_name=self.aws.region)
            self._local.admin = {}
        key, secret = (actor.access_key_id, actor.secret_access_key) if actor else ADMIN
        client = session.client(
            service,
            endpoint_url=self.aws.endpoint_url,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=self._config,
        )
        if actor is None:
            self._local.admin[service] = client
        return client


def _seed(aws: MotoSandbox, count: int) -> list[tuple[Actor, dict[str, Any]]]:
    """One user with one key per event, its routine history and the leaked call in the trail.

    Returns:
        Each key's actor and the CloudTrail record of its leaked call.
    """
    estate = AwsEstate(prefix=f"bench-{uuid.uuid4().hex[:4]}-")
    clients = _Clients(aws)
    lock = threading.Lock()
    history_end = datetime.now(UTC) - timedelta(hours=2)

    def user(index: int) -> tuple[Actor, list[dict[str, Any]], dict[str, Any]]:
        name = f"{estate.prefix}user-{index:04d}"
        iam = clients("iam")
        iam.create_user(UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        with lock:
            estate.users[name] = [key["AccessKeyId"]]
            estate.secrets[key["AccessKeyId"]] = key["SecretAccessKey"]
        actor = aws.user_actor(estate, name, key["AccessKeyId"])
        at = datetime.now(UTC)
        clients("s3", actor).list_buckets()  # a real call signed with the leaked key
        return actor, routine_history(actor, history_end), leaked_key_call(actor, at)

    with ThreadPoolExecutor(SEED_THREADS) as pool:
        seeded = list(pool.map(user, range(count)))
    records = [record for _, history, leaked in seeded for record in (*history, leaked)]
    for start in range(0, len(records), TRAIL_BATCH):
        aws.record(*records[start : start + TRAIL_BATCH])
    return [(actor, leaked) for actor, _, leaked in seeded]


def _inactive_keys(aws: MotoSandbox, actors: list[Actor]) -> int:
    clients = _Clients(aws)

    def inactive(actor: Actor) -> bool:
        keys = clients("iam").list_access_keys(UserName=actor.user_name)["AccessKeyMetadata"]
        return any(k["AccessKeyId"] == actor.access_key_id and k["Status"] == "Inactive" for k in keys)

    with ThreadPoolExecutor(SEED_THREADS) as pool:
        return sum(pool.map(inactive, actors))


# --- the benchmark ------------------------------------------------------------------------------


async def _post(
    stack: BenchStack, events: list[dict[str, Any]], twice: set[int], rate: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    """Post every event at ``rate``; the first and the repeated deliveries' answers, and the seconds taken."""
    first: list[dict[str, Any]] = [{} for _ in events]
    again: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=stack.ingress_url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {stack.token}"}

        async def deliver(event: dict[str, Any]) -> dict[str, Any]:
            try:
                response = await http.post("/events/aws", json=event, headers=headers)
            except httpx.HTTPError as error:  # counted as not accepted
                return {"status": 0, "error": str(error)}
            answer = response.json().get("delivery", {}) if response.is_success else {}
            return {"status": response.status_code, **answer}

        async def send(index: int) -> None:
            if index not in twice:
                first[index] = await deliver(events[index])
                return
            one, two = await asyncio.gather(deliver(events[index]), deliver(events[index]))
            # whichever started the run is the event's delivery; the other is the repeat
            first[index], repeat = (two, one) if two.get("kind") == "started" else (one, two)
            again.append(repeat)

        sends = []
        started = time.monotonic()
        for index in range(len(events)):
            sends.append(asyncio.create_task(send(index)))
            await asyncio.sleep(max(0.0, started + (index + 1) / rate - time.monotonic()))
        await asyncio.gather(*sends)
        posting_s = time.monotonic() - started
    return first, again, posting_s


async def _containment(
    stack: BenchStack, count: int, rate: float, say: Callable[[str], Any]
) -> dict[str, Any]:
    aws: MotoSandbox = stack.aws
    say(f"seeding {count} IAM users, one access key each, with history and a leaked call")
    seeding = time.monotonic()
    seeded = await asyncio.to_thread(_seed, aws, count)
    seed_s = time.monotonic() - seeding
    actors = [actor for actor, _ in seeded]
    events = [envelope(leaked) for _, leaked in seeded]
    twice = duplicated(count)
    say(f"posting {count} audit events at {rate:g}/s ({len(twice)} of them twice)")
    sampler = stack.sampler().start()
    first, again, posting_s = await _post(stack, events, twice, rate)
    accepted = [answer for answer in first if 200 <= answer["status"] < 300]
    workflow_ids = sorted({answer["workflow_id"] for answer in accepted})
    say(f"waiting for {len(workflow_ids)} runs to close")
    results = await bounded_results(stack.client, workflow_ids, LoopResult, RUN_TIMEOUT_S)
    peaks = sampler.stop()
    entries = await asyncio.to_thread(stack.store.events)
    by_run: dict[str, list[AuditEntry]] = {}
    for entry in entries:
        by_run.setdefault(entry.workflow_id, []).append(entry)
    measured = [containment_seconds(result, by_run.get(result.workflow_id, [])) for result in results]
    seconds = [s for s in measured if s is not None]
    started_runs = (await stack.client.count_workflows("WorkflowType = 'SecurityLoop'")).count
    deactivations = [
        entry.subject for entry in entries if entry.step == "acted" and entry.detail.startswith(DEACTIVATE)
    ]
    say("reading every key's status back from moto")
    inactive = await asyncio.to_thread(_inactive_keys, aws, actors)
    return {
        "benchmark": "containment",
        "measures": "audit event received -> credential disabled",
        "events": count,
        "rate_per_s": rate,
        "achieved_rate_per_s": round(count / posting_s, 3) if posting_s else None,
        "accepted_2xx": len(accepted),
        "runs_contained": len(seconds),
        "keys_inactive_after": inactive,
        "outcomes": dict(Counter(str(result.outcome) for result in results)),
        "duplicates_posted": len(again),
        "duplicates_answered_as_duplicate": sum(
            200 <= answer["status"] < 300 and answer.get("kind") == "duplicate" for answer in again
        ),
        "duplicate_runs": started_runs - len(workflow_ids),
        "duplicate_actions": repeats(deactivations),
        "runs": len(workflow_ids),
        "actions": len(deactivations),
        "lost": count - inactive,
        **summary(seconds),
        "seed_s": round(seed_s, 2),
        "peak_rss_mib": peaks,
        "cpu_s": sampler.cpu_s,
        "round_trips_per_run": await sampled_round_trips(stack.client, "WorkflowType = 'SecurityLoop'"),
    }


async def containment(count: int = 200, rate: float = 2.0, progress: Progress = None) -> dict[str, Any]:
    """Run the containment benchmark on a fresh bench stack with the sandbox's security policies."""
    return await on_fresh_bench_stack(
        lambda stack, say: _containment(stack, count, rate, say), progress, [SANDBOX_POLICIES]
    )
