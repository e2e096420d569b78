"""The drill estate's AWS: moto in server mode on loopback, and a stand-in for CloudTrail.

moto answers boto3 over HTTP as AWS would for every call suture makes, but it
keeps no CloudTrail and lets an Inactive key go on signing requests. The sandbox
closes both gaps the way AWS looks from outside. Every call an actor of the
estate makes goes through :meth:`MotoSandbox.call_as`, which

* refuses the call with ``InvalidClientTokenId`` when the actor's key is Inactive
  (what IAM does), and makes it against moto otherwise;
* writes the CloudTrail record of the attempt to the trail's CloudWatch Logs group
  in moto, where suture reads baselines and post-containment use exactly as it
  would on AWS (see :mod:`activities.aws`);
* returns the record, which :func:`envelope` wraps as the EventBridge event AWS
  would deliver to ``POST /events/aws``.

Each drill seeds its own users, role, groups and bucket under a prefix, so drills
run side by side in one moto without touching each other. Each sandbox runs its
own moto process, so two stacks never share an estate.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import boto3
import httpx
from botocore.config import Config
from botocore.exceptions import ClientError

from activities.aws import DEFAULT_TRAIL_LOG_GROUP, AwsContainment
from sandbox.ports import LOOPBACK, free_port
from workers.child_processes import start_child, stop_child

SANDBOX_ACCOUNT = "123456789012"
"""moto's default account, the one the sandbox policies govern."""
SANDBOX_REGION = "us-east-1"
ADMIN = ("sandbox-admin", "sandbox-admin-secret")
"""Credentials the sandbox and suture sign with; moto accepts any, AWS would not."""
READY_TIMEOUT_S = 60.0
"""How long moto's process may take to answer (it imports every AWS service it mocks)."""
_AMI = "ami-12c6146b"
_TRAIL_STREAM = "sandbox-trail"


@dataclass(frozen=True)
class Actor:
    """Someone who calls AWS: credentials to sign with and the identity CloudTrail records."""

    access_key_id: str
    secret_access_key: str
    identity: dict[str, Any]
    session_token: str | None = None
    user_name: str | None = None
    """Set for an IAM user's long-term key, whose status IAM checks on every call."""


@dataclass
class AwsEstate:
    """What :meth:`MotoSandbox.seed` created, by role in the drills."""

    prefix: str
    users: dict[str, list[str]] = field(default_factory=dict)
    """IAM user name → its access key ids."""
    secrets: dict[str, str] = field(default_factory=dict)
    role_arn: str = ""
    role_workloads: list[str] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)
    """Security group name → id."""
    bucket: str = ""
    admin_policy_arn: str = ""

    @property
    def deployer(self) -> str:
        return f"{self.prefix}ci-deployer"


class MotoSandbox:
    """moto on a free loopback port, with the estate's AWS resources and trail.

    Args:
        region: the region every resource lives in.
        trail_log_group: the CloudWatch Logs group the stand-in trail writes to;
            suture's :class:`~activities.aws.AwsContainment` reads the same one.
    """

    def __init__(self, region: str = SANDBOX_REGION, trail_log_group: str = DEFAULT_TRAIL_LOG_GROUP) -> None:
        self.region = region
        self.trail_log_group = trail_log_group
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._endpoint: str | None = None
        self._lock = threading.Lock()
        self._trail_ready = False

    # --- lifecycle ------------------------------------------------------------------------

    @classmethod
    def connect(cls, endpoint_url: str, **options: Any) -> MotoSandbox:
        """A sandbox over a moto server started elsewhere."""
        sandbox = cls(**options)
        sandbox._endpoint = endpoint_url
        return sandbox

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> str:
        """Start moto in a process of its own, able to simulate IAM policies; its endpoint URL.

        Its own process, because moto keeps its state in module globals: two servers
        in one process would share one estate (see :mod:`sandbox.moto_serve`).
        boto3 signs every request, so a process without AWS credentials gets the
        sandbox's (never real ones: the endpoint is loopback and moto checks nothing).

        Raises:
            RuntimeError: moto exited or did not answer within ``timeout_s``, with its last words.
        """
        os.environ.setdefault("AWS_ACCESS_KEY_ID", ADMIN[0])
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", ADMIN[1])
        port = free_port()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop)
        self._process = start_child(
            [sys.executable, "-m", "sandbox.moto_serve", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        endpoint = f"http://{LOOPBACK}:{port}"
        deadline = time.monotonic() + timeout_s
        while self._process.poll() is None and time.monotonic() < deadline:
            try:
                httpx.get(f"{endpoint}/moto-api/data.json", timeout=2).raise_for_status()
            except httpx.HTTPError:
                time.sleep(0.1)
                continue
            self._endpoint = endpoint
            return endpoint
        said = self._last_words()
        self.stop()
        raise RuntimeError(f"moto did not start on {endpoint} within {timeout_s:.0f}s: {said}")

    def _last_words(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return " / ".join(lines[-3:]) or "no output"

    def stop(self) -> None:
        process, self._process = self._process, None
        stop_child(process, 10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> MotoSandbox:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        if self._endpoint is None:
            raise RuntimeError("the moto sandbox is not started")
        return self._endpoint

    def reset(self) -> None:
        """Forget every resource (moto's reset API)."""
        httpx.post(f"{self.endpoint_url}/moto-api/reset", timeout=10).raise_for_status()
        self._trail_ready = False

    # --- clients --------------------------------------------------------------------------

    def client(self, service: str, actor: Actor | None = None) -> Any:
        key, secret, token = (
            (actor.access_key_id, actor.secret_access_key, actor.session_token) if actor else (*ADMIN, None)
        )
        return boto3.client(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            aws_session_token=token,
            config=Config(retries={"max_attempts": 2}),
        )

    def containment(self) -> AwsContainment:
        """suture's AWS activities, pointed at this sandbox."""
        session = boto3.Session(
            aws_access_key_id=ADMIN[0], aws_secret_access_key=ADMIN[1], region_name=self.region
        )
        return AwsContainment(session, endpoint_url=self.endpoint_url, trail_log_group=self.trail_log_group)

    # --- the estate -------------------------------------------------------------------------

    def seed(self, prefix: str, workloads: int = 4) -> AwsEstate:
        """Create one drill's resources under ``prefix``.

        Users with keys (``ci-deployer`` has two), a role shared by ``workloads``
        instances and a Lambda function, security groups with several rules, a
        bucket with its public-access block on, and an administrator-equivalent
        customer policy.
        """
        estate = AwsEstate(prefix=prefix)
        iam, ec2, s3 = self.client("iam"), self.client("ec2"), self.client("s3")
        for user, keys in ((estate.deployer, 2), (f"{prefix}analyst", 1)):
            iam.create_user(UserName=user)
            for _ in range(keys):
                key = iam.create_access_key(UserName=user)["AccessKey"]
                estate.users.setdefault(user, []).append(key["AccessKeyId"])
                estate.secrets[key["AccessKeyId"]] = key["SecretAccessKey"]
        self._seed_shared_role(estate, workloads)
        vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        web = ec2.create_security_group(GroupName=f"{prefix}web", Description="web tier", VpcId=vpc)[
            "GroupId"
        ]
        db = ec2.create_security_group(GroupName=f"{prefix}db", Description="database", VpcId=vpc)["GroupId"]
        ec2.authorize_security_group_ingress(
            GroupId=web,
            IpPermissions=[ingress_permission(443, "0.0.0.0/0"), ingress_permission(80, "0.0.0.0/0")],
        )
        ec2.authorize_security_group_ingress(
            GroupId=web, IpPermissions=[ingress_permission(22, "10.0.0.0/8", "bastion")]
        )
        ec2.authorize_security_group_ingress(
            GroupId=db, IpPermissions=[ingress_permission(5432, "10.0.0.0/16")]
        )
        estate.groups = {"web": web, "db": db}
        estate.bucket = f"{prefix}customer-data".lower()
        s3.create_bucket(Bucket=estate.bucket)
        s3.put_public_access_block(
            Bucket=estate.bucket, PublicAccessBlockConfiguration=dict.fromkeys(_BLOCK_FLAGS, True)
        )
        document = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        estate.admin_policy_arn = iam.create_policy(
            PolicyName=f"{prefix}break-glass-admin", PolicyDocument=json.dumps(document)
        )["Policy"]["Arn"]
        return estate

    def _seed_shared_role(self, estate: AwsEstate, workloads: int) -> None:
        iam, ec2 = self.client("iam"), self.client("ec2")
        name = f"{estate.prefix}shared-app"
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": ["ec2.amazonaws.com", "lambda.amazonaws.com"]},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        estate.role_arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"][
            "Arn"
        ]
        iam.put_role_policy(
            RoleName=name,
            PolicyName="app-data",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            ),
        )
        profile = iam.create_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
        for n in range(workloads):
            workload = f"{estate.prefix}checkout-{n}"
            ec2.run_instances(
                ImageId=_AMI,
                MinCount=1,
                MaxCount=1,
                IamInstanceProfile={"Arn": profile["Arn"]},
                TagSpecifications=[
                    {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": workload}]},
                ],
            )
            estate.role_workloads.append(workload)
        function = f"{estate.prefix}thumbnails"
        self.client("lambda").create_function(
            FunctionName=function,
            Runtime="python3.12",
            Role=estate.role_arn,
            Handler="app.handler",
            Code={"ZipFile": _zipped("def handler(event, context):\n    return event\n")},
        )
        estate.role_workloads.append(function)

    # --- actors ---------------------------------------------------------------------------

    def user_actor(self, estate: AwsEstate, user: str, key_id: str) -> Actor:
        return Actor(
            access_key_id=key_id,
            secret_access_key=estate.secrets[key_id],
            user_name=user,
            identity={
                "type": "IAMUser",
                "principalId": f"AIDA{uuid.uuid5(uuid.NAMESPACE_DNS, user).hex[:17].upper()}",
                "arn": f"arn:aws:iam::{SANDBOX_ACCOUNT}:user/{user}",
                "accountId": SANDBOX_ACCOUNT,
                "accessKeyId": key_id,
                "userName": user,
            },
        )

    def role_actor(self, role_arn: str, session: str) -> Actor:
        """A workload's session of ``role_arn``, with real temporary credentials from moto's STS."""
        credentials = self.client("sts").assume_role(RoleArn=role_arn, RoleSessionName=session)["Credentials"]
        name = role_arn.rpartition("/")[2]
        return Actor(
            access_key_id=credentials["AccessKeyId"],
            secret_access_key=credentials["SecretAccessKey"],
            session_token=credentials["SessionToken"],
            identity={
                "type": "AssumedRole",
                "principalId": f"AROA{name.upper()[:12]}:{session}",
                "arn": f"arn:aws:sts::{SANDBOX_ACCOUNT}:assumed-role/{name}/{session}",
                "accountId": SANDBOX_ACCOUNT,
                "accessKeyId": credentials["AccessKeyId"],
                "sessionContext": {
                    "sessionIssuer": {
                        "type": "Role",
                        "principalId": f"AROA{name.upper()[:12]}",
                        "arn": role_arn,
                        "accountId": SANDBOX_ACCOUNT,
                        "userName": name,
                    },
                    "attributes": {"creationDate": _iso(datetime.now(UTC)), "mfaAuthenticated": "false"},
                },
            },
        )

    # --- the stand-in trail -----------------------------------------------------------------

    def call_as(
        self,
        actor: Actor,
        service: str,
        operation: str,
        params: dict[str, Any] | None = None,
        *,
        source_ip: str,
        user_agent: str = "aws-cli/2.15.0",
    ) -> dict[str, Any]:
        """Make one API call as ``actor``, as AWS would judge it, and record it in the trail.

        Returns:
            The CloudTrail record, with ``errorCode`` when the call was refused.
        """
        params = params or {}
        at = datetime.now(UTC)
        response: dict[str, Any] = {}
        error_code = ""
        if actor.user_name and self.key_status(actor.user_name, actor.access_key_id) != "Active":
            error_code = "InvalidClientTokenId"
        else:
            method = _METHODS.get(operation) or _snake(operation)
            try:
                response = getattr(self.client(service, actor), method)(**params)
            except ClientError as error:
                error_code = str(error.response["Error"]["Code"])
        record = cloudtrail_record(
            actor,
            service,
            operation,
            params,
            response,
            error_code,
            at=at,
            source_ip=source_ip,
            user_agent=user_agent,
        )
        self.record(record)
        return record

    def seed_baseline(
        self,
        actor: Actor,
        calls: list[tuple[str, str]],
        source_ips: list[str],
        *,
        days: int = 7,
        per_day: int = 6,
        user_agent: str = "aws-cli/2.15.0",
    ) -> int:
        """Write ``days`` of routine history for ``actor``: ``calls`` are ``(service, operation)``.

        The history ends two hours ago, so it lies before any baseline gap.
        """
        now = datetime.now(UTC) - timedelta(hours=2)
        records = []
        for day in range(days):
            for n in range(per_day):
                service, operation = calls[(day + n) % len(calls)]
                at = now - timedelta(days=day, hours=n * 3)
                ip = source_ips[(day + n) % len(source_ips)]
                records.append(
                    cloudtrail_record(
                        actor, service, operation, {}, {}, "", at=at, source_ip=ip, user_agent=user_agent
                    )
                )
        self.record(*records)
        return len(records)

    def record(self, *records: dict[str, Any]) -> None:
        """Deliver CloudTrail records to the trail's log group, as the CloudWatch Logs integration does."""
        logs = self.client("logs")
        with self._lock:
            if not self._trail_ready:
                self._ensure_trail(logs)
            ordered = sorted(records, key=lambda record: _millis(record["eventTime"]))
            events = [{"timestamp": _millis(r["eventTime"]), "message": json.dumps(r)} for r in ordered]
            logs.put_log_events(
                logGroupName=self.trail_log_group, logStreamName=_TRAIL_STREAM, logEvents=events
            )

    def _ensure_trail(self, logs: Any) -> None:
        for create in (
            lambda: logs.create_log_group(logGroupName=self.trail_log_group),
            lambda: logs.create_log_stream(logGroupName=self.trail_log_group, logStreamName=_TRAIL_STREAM),
        ):
            try:
                create()
            except ClientError as error:
                if error.response["Error"]["Code"] != "ResourceAlreadyExistsException":
                    raise
        self._trail_ready = True

    # --- reads for drill checks -------------------------------------------------------------

    def key_status(self, user: str, key_id: str) -> str:
        keys = self.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]
        return next((str(k["Status"]) for k in keys if k["AccessKeyId"] == key_id), "missing")

    def ingress_rules(self, group_id: str) -> set[tuple[str, int, int, str]]:
        rules = self.client("ec2").describe_security_group_rules(
            Filters=[{"Name": "group-id", "Values": [group_id]}]
        )["SecurityGroupRules"]
        return {
            (
                r["IpProtocol"],
                r.get("FromPort", -1),
                r.get("ToPort", -1),
                r.get("CidrIpv4") or r.get("CidrIpv6", ""),
            )
            for r in rules
            if not r["IsEgress"]
        }

    def public_access_block(self, bucket: str) -> dict[str, bool] | None:
        try:
            found = self.client("s3").get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        except ClientError as error:
            if error.response["Error"]["Code"] == "NoSuchPublicAccessBlockConfiguration":
                return None
            raise
        return {flag: bool(found.get(flag)) for flag in _BLOCK_FLAGS}

    def role_state(self, role_arn: str) -> dict[str, Any]:
        """What the role is: its policies and instance profiles, to check nothing changed."""
        iam = self.client("iam")
        name = role_arn.rpartition("/")[2]
        return {
            "inline": sorted(iam.list_role_policies(RoleName=name)["PolicyNames"]),
            "attached": sorted(
                p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
            ),
            "profiles": sorted(
                p["Arn"] for p in iam.list_instance_profiles_for_role(RoleName=name)["InstanceProfiles"]
            ),
        }


# --- CloudTrail and EventBridge shapes ---------------------------------------------------------

_BLOCK_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
_READ_ONLY = ("Get", "List", "Describe", "Head")
_METHODS = {
    "DeleteBucketPublicAccessBlock": "delete_public_access_block",
    "PutBucketPublicAccessBlock": "put_public_access_block",
}
"""CloudTrail names S3's public-access-block calls after the bucket; boto3 does not."""


def cloudtrail_record(
    actor: Actor,
    service: str,
    operation: str,
    params: dict[str, Any],
    response: dict[str, Any],
    error_code: str,
    *,
    at: datetime,
    source_ip: str,
    user_agent: str,
) -> dict[str, Any]:
    """The CloudTrail record AWS writes for one call (management event)."""
    record: dict[str, Any] = {
        "eventVersion": "1.09",
        "userIdentity": actor.identity,
        "eventTime": _iso(at),
        "eventSource": f"{service}.amazonaws.com",
        "eventName": operation,
        "awsRegion": SANDBOX_REGION,
        "sourceIPAddress": source_ip,
        "userAgent": user_agent,
        "requestParameters": _request_parameters(operation, params),
        "responseElements": _response_elements(operation, response) if not error_code else None,
        "requestID": str(uuid.uuid4()),
        "eventID": str(uuid.uuid4()),
        "readOnly": operation.startswith(_READ_ONLY),
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": SANDBOX_ACCOUNT,
        "eventCategory": "Management",
    }
    if error_code:
        record["errorCode"] = error_code
        record["errorMessage"] = "The security token included in the request is invalid."
    return record


def envelope(record: dict[str, Any]) -> dict[str, Any]:
    """The EventBridge event AWS delivers for a CloudTrail record."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "AWS API Call via CloudTrail",
        "source": f"aws.{record['eventSource'].split('.')[0]}",
        "account": record["recipientAccountId"],
        "time": record["eventTime"],
        "region": record["awsRegion"],
        "resources": [],
        "detail": record,
    }


def _request_parameters(operation: str, params: dict[str, Any]) -> dict[str, Any] | None:
    if operation in ("AuthorizeSecurityGroupIngress", "RevokeSecurityGroupIngress"):
        return {
            "groupId": params.get("GroupId"),
            "ipPermissions": {"items": [_cloudtrail_permission(p) for p in params.get("IpPermissions", [])]},
        }
    if operation.endswith("PublicAccessBlock"):
        shown: dict[str, Any] = {"bucketName": params.get("Bucket"), "publicAccessBlock": ""}
        if "PublicAccessBlockConfiguration" in params:
            shown["PublicAccessBlockConfiguration"] = params["PublicAccessBlockConfiguration"]
        return shown
    return {key[:1].lower() + key[1:]: value for key, value in params.items()} or None


def _cloudtrail_permission(permission: dict[str, Any]) -> dict[str, Any]:
    return {
        "ipProtocol": permission.get("IpProtocol"),
        "fromPort": permission.get("FromPort"),
        "toPort": permission.get("ToPort"),
        "groups": {},
        "ipRanges": {"items": [{"cidrIp": r["CidrIp"]} for r in permission.get("IpRanges", [])]},
        "ipv6Ranges": {"items": [{"cidrIpv6": r["CidrIpv6"]} for r in permission.get("Ipv6Ranges", [])]},
        "prefixListIds": {},
    }


def _response_elements(operation: str, response: dict[str, Any]) -> dict[str, Any] | None:
    if operation == "AuthorizeSecurityGroupIngress":
        rules = [
            {
                "groupId": rule["GroupId"],
                "securityGroupRuleId": rule["SecurityGroupRuleId"],
                "isEgress": rule["IsEgress"],
                "ipProtocol": rule["IpProtocol"],
                "fromPort": rule.get("FromPort"),
                "toPort": rule.get("ToPort"),
                "cidrIpv4": rule.get("CidrIpv4"),
            }
            for rule in response.get("SecurityGroupRules", [])
        ]
        return {"_return": True, "securityGroupRuleSet": {"items": rules}}
    return None


def ingress_permission(port: int, cidr: str, description: str = "") -> dict[str, Any]:
    """One TCP port from one CIDR, as boto3's ``IpPermissions`` item."""
    ip_range = {"CidrIp": cidr, **({"Description": description} if description else {})}
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [ip_range]}


def _zipped(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", source)
    return buffer.getvalue()


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _millis(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


DENIED_IAM_ACTIONS: set[str] = set()
"""IAM actions the sandbox's identity lacks, as ``iam:SimulatePrincipalPolicy`` reports them."""


def serve_policy_simulation() -> None:
    """Teach this process's moto ``iam:SimulatePrincipalPolicy``, which it does not implement.

    suture's readiness check asks IAM whether its identity may run each action
    the registry declares; the sandbox answers "allowed" for everything except
    :data:`DENIED_IAM_ACTIONS`, so a drill can take a permission away.
    """
    from moto.core.responses import ActionResult
    from moto.iam.responses import IamResponse

    def simulate_principal_policy(self: IamResponse) -> ActionResult:
        names = self._get_param("ActionNames") or []
        results = [
            {
                "EvalActionName": name,
                "EvalResourceName": "*",
                "EvalDecision": "implicitDeny" if name in DENIED_IAM_ACTIONS else "allowed",
            }
            for name in names
        ]
        return ActionResult({"EvaluationResults": results, "IsTruncated": False})

    IamResponse.simulate_principal_policy = simulate_principal_policy  # type: ignore[attr-defined]
