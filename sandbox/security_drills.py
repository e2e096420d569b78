"""The security drills: real boto3 calls against moto, CloudTrail events through the ingress.

Each drill seeds its own slice of the AWS estate (users with two keys, a role
shared by several workloads, security groups with several rules, a bucket), gives
the actors a routine history in the trail, then lets something happen: a leaked
key is used from a strange place, SSH is opened to the world, a shared role's
session misbehaves, a bucket loses its public-access block, or an ordinary change
is made. The CloudTrail record of that call goes to ``POST /events/aws`` as
EventBridge would send it, and the drill checks what a user would check in AWS
afterwards: which key is Inactive, which rules remain, whether the role changed,
what the on-call channel received.

What each drill needs from the stack: ``stack.aws`` (a started
:class:`~sandbox.aws.MotoSandbox` the worker's AWS activities point at),
``stack.ingress_url`` and ``stack.token``, ``stack.client``, and
``stack.escalations`` (the briefings the on-call channel received).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import httpx

from sandbox.aws import SANDBOX_ACCOUNT, Actor, AwsEstate, MotoSandbox, envelope, ingress_permission
from sandbox.drill import DRILLS, DrillResult, drill
from sandbox.results import drill_result
from sandbox.stack import Stack
from suture.models import LoopResult

RUN_TIMEOUT_S = 90.0
ROUTINE = [("ec2", "DescribeInstances"), ("s3", "GetObject"), ("s3", "PutObject")]
OFFICE = ["10.0.1.15", "10.0.1.16"]
INTRUDER = "203.0.113.66"
INTRUDER_AGENT = "python-requests/2.31.0"


async def seeded(stack: Stack, name: str) -> tuple[MotoSandbox, AwsEstate]:
    aws: MotoSandbox = stack.aws
    estate = await asyncio.to_thread(aws.seed, f"{name[:10]}-{uuid.uuid4().hex[:4]}-")
    return aws, estate


async def call(aws: MotoSandbox, actor: Actor, service: str, operation: str, **kwargs: Any) -> dict[str, Any]:
    params = kwargs.pop("params", None)
    return await asyncio.to_thread(aws.call_as, actor, service, operation, params, **kwargs)


async def report(stack: Stack, record: dict[str, Any]) -> str:
    """Send the call's CloudTrail record to the ingress as EventBridge would; the run's workflow id."""
    async with httpx.AsyncClient(timeout=15) as http:
        response = await http.post(
            f"{stack.ingress_url}/events/aws",
            json=envelope(record),
            headers={"Authorization": f"Bearer {stack.token}"},
        )
    response.raise_for_status()
    workflow_id: str = response.json()["delivery"]["workflow_id"]
    return workflow_id


async def result_of(stack: Stack, workflow_id: str) -> LoopResult:
    handle = stack.client.get_workflow_handle(workflow_id, result_type=LoopResult)
    return await asyncio.wait_for(handle.result(), RUN_TIMEOUT_S)


async def opened_by_deployer(
    stack: Stack, aws: MotoSandbox, estate: AwsEstate, group: str, port: int, cidr: str
) -> LoopResult:
    """The deployer opens ``port`` of ``group`` to ``cidr`` from the office; the run that follows."""
    deployer = aws.user_actor(estate, estate.deployer, estate.users[estate.deployer][1])
    opened = await call(
        aws,
        deployer,
        "ec2",
        "AuthorizeSecurityGroupIngress",
        params={"GroupId": group, "IpPermissions": [ingress_permission(port, cidr)]},
        source_ip=OFFICE[0],
    )
    return await result_of(stack, await report(stack, opened))


@contextlib.asynccontextmanager
async def keeps_calling(aws: MotoSandbox, actor: Actor, seen: list[dict[str, Any]]) -> Any:
    """The intruder goes on using the key every half second while the block runs."""
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            seen.append(
                await call(
                    aws, actor, "sts", "GetCallerIdentity", source_ip=INTRUDER, user_agent=INTRUDER_AGENT
                )
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        stop.set()
        await task


@drill(
    "leaked-access-key",
    "security",
    "resolved",
    "a deploy key is used from an unknown address for reconnaissance; that key alone is disabled",
)
async def leaked_access_key(stack: Stack) -> DrillResult:
    aws, estate = await seeded(stack, "leaked-key")
    leaked, spare = estate.users[estate.deployer]
    intruder = aws.user_actor(estate, estate.deployer, leaked)
    await asyncio.to_thread(aws.seed_baseline, intruder, ROUTINE, OFFICE)
    await asyncio.to_thread(
        aws.seed_baseline, aws.user_actor(estate, estate.deployer, spare), ROUTINE, ["10.0.2.7"]
    )
    role_before = await asyncio.to_thread(aws.role_state, estate.role_arn)
    later: list[dict[str, Any]] = []
    first = await call(aws, intruder, "s3", "ListBuckets", source_ip=INTRUDER, user_agent=INTRUDER_AGENT)
    async with keeps_calling(aws, intruder, later):
        run = await result_of(stack, await report(stack, first))
    again = await result_of(stack, await report(stack, later[-1]))
    contained = [record for record in later if record.get("errorCode")]
    checks = {
        "one autonomous deactivation of that key": [(a.type, a.target, a.mode) for a in run.actions]
        == [("iam.deactivate_access_key", f"{SANDBOX_ACCOUNT}/{estate.deployer}/{leaked}", "autonomous")],
        "the leaked key is Inactive": await asyncio.to_thread(aws.key_status, estate.deployer, leaked)
        == "Inactive",
        "the user's other key stays Active": await asyncio.to_thread(aws.key_status, estate.deployer, spare)
        == "Active",
        "the shared role is untouched": await asyncio.to_thread(aws.role_state, estate.role_arn)
        == role_before,
        "the intruder's later calls are refused": bool(contained) and later[-1].get("errorCode") is not None,
        "a later event about the same key does not act again": again.actions == [],
    }
    detail = run.reason
    if run.timeline.acted and run.timeline.detected:
        seconds = (run.timeline.acted - run.timeline.detected).total_seconds()
        detail = f"containment began {seconds:.2f}s after the event arrived; {detail}"
    return drill_result(DRILLS["leaked-access-key"], run, checks, detail)


@drill(
    "open-ssh-ingress",
    "security",
    "resolved",
    "SSH is opened to 0.0.0.0/0 on the web tier; that rule alone is revoked",
)
async def open_ssh_ingress(stack: Stack) -> DrillResult:
    aws, estate = await seeded(stack, "open-ssh")
    web = estate.groups["web"]
    before = await asyncio.to_thread(aws.ingress_rules, web)
    run = await opened_by_deployer(stack, aws, estate, web, 22, "0.0.0.0/0")
    after = await asyncio.to_thread(aws.ingress_rules, web)
    checks = {
        "one revocation of that rule": [(a.type, a.target) for a in run.actions]
        == [("ec2.revoke_ingress", f"{SANDBOX_ACCOUNT}/{web}/tcp:22-22/0.0.0.0/0")],
        "SSH from the world is gone": ("tcp", 22, 22, "0.0.0.0/0") not in after,
        "the group's other rules remain": after == before,
        "the deployer's key still works": await asyncio.to_thread(
            aws.key_status, estate.deployer, estate.users[estate.deployer][1]
        )
        == "Active",
    }
    return drill_result(DRILLS["open-ssh-ingress"], run, checks)


@drill(
    "shared-credential-anomaly",
    "security",
    "escalated",
    "a session of a role many workloads share misbehaves; nothing revoked, a human gets the dependents",
)
async def shared_credential_anomaly(stack: Stack) -> DrillResult:
    aws, estate = await seeded(stack, "shared-role")
    session = await asyncio.to_thread(aws.role_actor, estate.role_arn, "i-checkout-0")
    await asyncio.to_thread(
        aws.seed_baseline, session, [("s3", "GetObject"), ("s3", "PutObject")], ["10.0.3.21"]
    )
    before = await asyncio.to_thread(aws.role_state, estate.role_arn)
    odd = await call(aws, session, "s3", "ListBuckets", source_ip="198.51.100.23", user_agent=INTRUDER_AGENT)
    run = await result_of(stack, await report(stack, odd))
    briefings = stack.escalations.for_run(run.workflow_id)
    dependents = briefings[0].get("dependents", []) if briefings else []
    keys = [(user, key) for user, ids in estate.users.items() for key in ids]
    checks = {
        "nothing was revoked": run.actions == [],
        "the role is unchanged": await asyncio.to_thread(aws.role_state, estate.role_arn) == before,
        "every access key is still Active": all(
            [await asyncio.to_thread(aws.key_status, user, key) == "Active" for user, key in keys]
        ),
        "one briefing reached the on-call channel": len(briefings) == 1,
        "the briefing lists every dependent": all(
            any(workload in d for d in dependents) for workload in estate.role_workloads
        ),
    }
    return drill_result(DRILLS["shared-credential-anomaly"], run, checks)


@drill(
    "public-bucket",
    "security",
    "resolved",
    "a bucket's public-access block is removed; it is put back",
)
async def public_bucket(stack: Stack) -> DrillResult:
    aws, estate = await seeded(stack, "public-bucket")
    analyst = f"{estate.prefix}analyst"
    actor = aws.user_actor(estate, analyst, estate.users[analyst][0])
    removed = await call(
        aws,
        actor,
        "s3",
        "DeleteBucketPublicAccessBlock",
        params={"Bucket": estate.bucket},
        source_ip=OFFICE[1],
    )
    run = await result_of(stack, await report(stack, removed))
    block = await asyncio.to_thread(aws.public_access_block, estate.bucket)
    checks = {
        "one restore of that bucket's block": [(a.type, a.target) for a in run.actions]
        == [("s3.restore_public_access_block", f"{SANDBOX_ACCOUNT}/{estate.bucket}")],
        "all four block settings are on again": block is not None and all(block.values()),
        "the analyst's key still works": await asyncio.to_thread(
            aws.key_status, analyst, estate.users[analyst][0]
        )
        == "Active",
    }
    return drill_result(DRILLS["public-bucket"], run, checks)


@drill(
    "benign-change",
    "security",
    "suppressed",
    "the database port is opened to a private range; recorded, nothing done",
)
async def benign_change(stack: Stack) -> DrillResult:
    aws, estate = await seeded(stack, "benign")
    db = estate.groups["db"]
    run = await opened_by_deployer(stack, aws, estate, db, 5432, "10.20.0.0/16")
    checks = {
        "no action": run.actions == [],
        "the new rule stays": ("tcp", 5432, 5432, "10.20.0.0/16")
        in await asyncio.to_thread(aws.ingress_rules, db),
        "nobody was paged": stack.escalations.for_run(run.workflow_id) == [],
    }
    return drill_result(DRILLS["benign-change"], run, checks)
