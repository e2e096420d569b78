"""AWS containment as activities: read, contain one narrow resource, verify, undo.

Each containment action has three activities: ``prepare`` captures into the
snapshot everything its undo needs (so ``suture undo`` can run it days later),
``do`` changes exactly one resource, ``undo`` puts the captured state back. All
of them compare before they change: "already Inactive", "rule already gone" and
"already attached" are successes with ``changed=False``, which makes retries and
duplicate runs harmless. AWS offers no client token on these calls, so the
idempotency key of the action is recorded in the outcome evidence instead.

Credential use is observed in the CloudTrail log delivered to a CloudWatch Logs
log group (a trail's standard CloudWatch Logs integration): the baseline of a key
or role is the set of source addresses, APIs and user agents it used during the
baseline window, and a key's containment holds when no call signed with it
succeeds after it was disabled. The same query works against moto, where the drill
sandbox plays CloudTrail and writes the records (with ``errorCode`` for the calls
a disabled key can no longer make). On real AWS the trail delivers with a delay of
minutes, so the verification window of a key policy must exceed that delay.

The actions, their undo state and the IAM permissions they need are declared in
:mod:`policies.actions.aws`; each method here implements one declared activity.
A trail read pages through up to thousands of records, so it heartbeats once per
page and its declaration sets the heartbeat timeout.

boto3 is blocking, so these are plain functions run on the worker's thread pool.
Errors are sorted for Temporal (see :mod:`suture.errors`): a missing resource is
``TargetNotFound`` and a refused call ``PermissionDenied`` naming the declared
permission (both permanent, with the fix in the message); throttling, 5xx
answers and lost connections are ``AwsUnavailable`` and retried.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import unquote

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from policies.actions import Permissions, action_spec, activity_declaration, activity_name, implements
from policies.actions import aws as declared
from policies.actions.aws import (
    AccessKeyState,
    IngressState,
    PolicyAttachmentState,
    PublicAccessBlockParams,
    PublicAccessBlockState,
)
from policies.targets import (
    AccessKeyRef,
    BucketRef,
    IngressRuleRef,
    PolicyAttachmentRef,
    target_ref,
)
from suture.errors import ActionError, AwsUnavailable, PermissionDenied, TargetNotFound
from suture.models import (
    ActionOutcome,
    ContainmentCheck,
    CredentialActivity,
    CredentialQuery,
    Evidence,
    HealthReport,
    PlannedAction,
    PolicyDocument,
    PolicyDocumentRequest,
    RoleDependents,
    RoleDependentsRequest,
    Snapshot,
    Verdict,
)

DEFAULT_TRAIL_LOG_GROUP = "suture-cloudtrail"
ClientFactory = Callable[[str, str, str], Any]
"""``(service, region, account) -> boto3 client``; lets a deployment assume a role per account."""

_NOT_FOUND = {
    "NoSuchEntity",
    "InvalidGroup.NotFound",
    "InvalidGroupId.Malformed",
    "NoSuchBucket",
    "ResourceNotFoundException",
}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "InvalidClientTokenId"}
_TRANSIENT = {
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "InternalError",
}
_PROTOCOLS = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6", "all": "-1"}
_BLOCK_KEYS = {
    "block_public_acls": "BlockPublicAcls",
    "ignore_public_acls": "IgnorePublicAcls",
    "block_public_policy": "BlockPublicPolicy",
    "restrict_public_buckets": "RestrictPublicBuckets",
}


class AwsContainment:
    """Activities over AWS, with clients made once per service, region and account.

    Args:
        session: the boto3 session whose credentials reach the accounts; the default
            credential chain when omitted.
        endpoint_url: an endpoint for every service (moto in the sandbox); None for AWS.
        trail_log_group: the CloudWatch Logs group the CloudTrail trail delivers to.
        clients: makes a client instead of the session, e.g. one per account role.
        max_trail_events: the most trail records read per query, to bound a baseline.
    """

    def __init__(
        self,
        session: boto3.Session | None = None,
        *,
        endpoint_url: str | None = None,
        trail_log_group: str = DEFAULT_TRAIL_LOG_GROUP,
        clients: ClientFactory | None = None,
        max_trail_events: int = 5000,
    ) -> None:
        self.session = session or boto3.Session()
        self.endpoint_url = endpoint_url
        self.trail_log_group = trail_log_group
        self.max_trail_events = max_trail_events
        self._factory = clients or self._session_client
        self._clients: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()
        self._config = Config(
            retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=15
        )

    def client(self, service: str, region: str, account: str = "") -> Any:
        key = (service, region, account)
        with self._lock:  # boto3 sessions are not thread-safe; clients are
            if key not in self._clients:
                self._clients[key] = self._factory(service, region, account)
            return self._clients[key]

    def _session_client(self, service: str, region: str, account: str) -> Any:
        return self.session.client(
            service, region_name=region, endpoint_url=self.endpoint_url, config=self._config
        )

    # --- reads for detection -------------------------------------------------------------

    @implements(declared.credential_activity)
    def credential_activity(self, query: CredentialQuery) -> CredentialActivity:
        """What one access key (or every session of one role) did in a window of the trail."""
        calls = list(self._trail_calls(query))
        ok = [record for record in calls if not record.get("errorCode")]
        times = [_event_time(record) for record in calls]
        return CredentialActivity(
            calls=len(calls),
            successful_calls=len(ok),
            source_ips=_distinct(record.get("sourceIPAddress") for record in calls),
            event_names=_distinct(record.get("eventName") for record in calls),
            user_agents=_distinct(record.get("userAgent") for record in calls),
            first_call_at=min(times, default=None),
            last_success_at=max((_event_time(record) for record in ok), default=None),
            source=f"cloudwatch-logs:{self.trail_log_group}",
        )

    @implements(declared.policy_document)
    def policy_document(self, request: PolicyDocumentRequest) -> PolicyDocument:
        iam = self.client("iam", request.region, request.account)
        with _aws(f"reading policy {request.policy_arn}", _reads(declared.policy_document)):
            policy = iam.get_policy(PolicyArn=request.policy_arn)["Policy"]
            version = iam.get_policy_version(
                PolicyArn=request.policy_arn, VersionId=policy["DefaultVersionId"]
            )
        document = version["PolicyVersion"]["Document"]
        if isinstance(document, str):  # the wire format is URL-encoded JSON
            document = json.loads(unquote(document))
        return PolicyDocument(policy_arn=request.policy_arn, document=document)

    @implements(declared.role_dependents)
    def role_dependents(self, request: RoleDependentsRequest) -> RoleDependents:
        """Workloads running with the role: instances through its instance profiles, Lambda functions."""
        role_name = request.role_arn.rpartition("/")[2]
        iam = self.client("iam", request.region, request.account)
        with _aws(f"listing the instance profiles of {role_name}", _reads(declared.role_dependents)):
            profiles = {
                profile["Arn"]
                for page in iam.get_paginator("list_instance_profiles_for_role").paginate(RoleName=role_name)
                for profile in page["InstanceProfiles"]
            }
        dependents = self._instances_with(profiles, request) if profiles else []
        dependents += self._functions_with(request)
        return RoleDependents(role_arn=request.role_arn, dependents=dependents)

    def _instances_with(self, profiles: set[str], request: RoleDependentsRequest) -> list[str]:
        ec2 = self.client("ec2", request.region, request.account)
        with _aws("listing instance profile associations", _reads(declared.role_dependents)):
            associations = [
                association
                for page in ec2.get_paginator("describe_iam_instance_profile_associations").paginate()
                for association in page["IamInstanceProfileAssociations"]
                if association["IamInstanceProfile"]["Arn"] in profiles
                and association["State"] == "associated"
            ]
        ids = sorted({association["InstanceId"] for association in associations})
        if not ids:
            return []
        with _aws("describing instances", _reads(declared.role_dependents)):
            reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
        names = {
            instance["InstanceId"]: {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}
            for reservation in reservations
            for instance in reservation["Instances"]
        }
        return [f"ec2 instance {i} ({_workload(names.get(i, {}))})" for i in ids]

    def _functions_with(self, request: RoleDependentsRequest) -> list[str]:
        lam = self.client("lambda", request.region, request.account)
        try:
            functions = [
                function["FunctionName"]
                for page in lam.get_paginator("list_functions").paginate()
                for function in page["Functions"]
                if function.get("Role") == request.role_arn
            ]
        except (ClientError, BotoCoreError) as error:  # the briefing says what could not be read
            return [f"unknown: Lambda functions could not be listed ({error})"]
        return [f"lambda function {name}" for name in sorted(functions)]

    # --- iam.deactivate_access_key ---------------------------------------------------------

    @implements(declared.snapshot_access_key)
    def snapshot_access_key(self, action: PlannedAction) -> Snapshot:
        ref = target_ref(action, AccessKeyRef)
        return AccessKeyState(status=self._key_status(ref, action)).snapshot(action)

    @implements(declared.deactivate_access_key)
    def deactivate_access_key(self, snapshot: Snapshot) -> ActionOutcome:
        action = snapshot.action
        ref = target_ref(action, AccessKeyRef)
        if self._key_status(ref, action) == "Inactive":
            if AccessKeyState.of(snapshot).status == "Active":
                return _earlier_attempt(
                    action, f"access key {ref.access_key_id} of {ref.user_name} is Inactive"
                )
            return _outcome(action, False, f"access key {ref.access_key_id} was already Inactive")
        with _aws(f"deactivating access key {ref.access_key_id}", _needs(action)):
            self.client("iam", ref.region, action.target.scope).update_access_key(
                UserName=ref.user_name, AccessKeyId=ref.access_key_id, Status="Inactive"
            )
        disabled = Evidence(
            source="aws.iam",
            query=f"UpdateAccessKey {ref.access_key_id} Status=Inactive",
            value="Inactive",
            at=datetime.now(UTC),
            note=f"credential disabled ({action.idempotency_key})",
        )
        return _outcome(
            action, True, f"access key {ref.access_key_id} of {ref.user_name} is Inactive", [disabled]
        )

    @implements(declared.reactivate_access_key)
    def reactivate_access_key(self, snapshot: Snapshot) -> ActionOutcome:
        action = snapshot.action
        ref = target_ref(action, AccessKeyRef)
        before = AccessKeyState.of(snapshot).status
        if self._key_status(ref, action) == before:
            return _outcome(action, False, f"access key {ref.access_key_id} is already {before}")
        with _aws(f"reactivating access key {ref.access_key_id}", _needs(action)):
            self.client("iam", ref.region, action.target.scope).update_access_key(
                UserName=ref.user_name, AccessKeyId=ref.access_key_id, Status=before
            )
        return _outcome(action, True, f"access key {ref.access_key_id} of {ref.user_name} is {before} again")

    def _key_status(self, ref: AccessKeyRef, action: PlannedAction) -> Literal["Active", "Inactive"]:
        iam = self.client("iam", ref.region, action.target.scope)
        with _aws(f"reading the access keys of {ref.user_name}", _needs(action)):
            keys = iam.list_access_keys(UserName=ref.user_name)["AccessKeyMetadata"]
        for key in keys:
            if key["AccessKeyId"] == ref.access_key_id:
                return "Active" if key["Status"] == "Active" else "Inactive"
        raise TargetNotFound.failure(
            f"access key {ref.access_key_id} does not belong to IAM user {ref.user_name}"
        )

    # --- ec2.revoke_ingress ------------------------------------------------------------------

    @implements(declared.snapshot_ingress)
    def snapshot_ingress(self, action: PlannedAction) -> Snapshot:
        ref = target_ref(action, IngressRuleRef)
        rule = self._find_rule(ref, action)
        if rule is None:
            return IngressState(present=False).snapshot(action)
        state = IngressState(
            present=True, rule_id=rule["SecurityGroupRuleId"], description=rule.get("Description", "")
        )
        return state.snapshot(action)

    @implements(declared.revoke_ingress)
    def revoke_ingress(self, snapshot: Snapshot) -> ActionOutcome:
        action = snapshot.action
        ref = target_ref(action, IngressRuleRef)
        if self._find_rule(ref, action) is None:
            if IngressState.of(snapshot).present:
                return _earlier_attempt(action, f"revoked {action.target.name}")
            return _outcome(action, False, f"rule {action.target.name} was already gone")
        ec2 = self.client("ec2", ref.region, action.target.scope)
        with _aws(f"revoking {action.target.name}", _needs(action)):
            try:
                ec2.revoke_security_group_ingress(GroupId=ref.group_id, IpPermissions=[ref.ip_permission()])
            except ClientError as error:
                if _code(error) != "InvalidPermission.NotFound":
                    raise
                return _outcome(action, False, f"rule {action.target.name} was already gone")
        revoked = Evidence(
            source="aws.ec2",
            query=f"RevokeSecurityGroupIngress {action.target.name}",
            value="revoked",
            at=datetime.now(UTC),
            note=f"ingress rule revoked ({action.idempotency_key})",
        )
        return _outcome(
            action, True, f"revoked {action.target.name}; the group's other rules are untouched", [revoked]
        )

    @implements(declared.authorize_ingress)
    def authorize_ingress(self, snapshot: Snapshot) -> ActionOutcome:
        action = snapshot.action
        ref = target_ref(action, IngressRuleRef)
        state = IngressState.of(snapshot)
        if not state.present:
            return _outcome(action, False, f"rule {action.target.name} did not exist before containment")
        if self._find_rule(ref, action) is not None:
            return _outcome(action, False, f"rule {action.target.name} is already present")
        ec2 = self.client("ec2", ref.region, action.target.scope)
        permission = ref.ip_permission(state.description or None)
        with _aws(f"authorizing {action.target.name}", _needs(action)):
            try:
                ec2.authorize_security_group_ingress(GroupId=ref.group_id, IpPermissions=[permission])
            except ClientError as error:
                if _code(error) != "InvalidPermission.Duplicate":
                    raise
                return _outcome(action, False, f"rule {action.target.name} is already present")
        return _outcome(action, True, f"authorized {action.target.name} again")

    def _find_rule(self, ref: IngressRuleRef, action: PlannedAction) -> dict[str, Any] | None:
        ec2 = self.client("ec2", ref.region, action.target.scope)
        with _aws(f"reading the rules of {ref.group_id}", _needs(action)):
            rules = [
                rule
                for page in ec2.get_paginator("describe_security_group_rules").paginate(
                    Filters=[{"Name": "group-id", "Values": [ref.group_id]}]
                )
                for rule in page["SecurityGroupRules"]
            ]
        protocol = _PROTOCOLS.get(ref.protocol, ref.protocol)
        for rule in rules:
            ports = (rule.get("FromPort", -1), rule.get("ToPort", -1))
            if (
                not rule["IsEgress"]
                and _PROTOCOLS.get(rule["IpProtocol"], rule["IpProtocol"]) == protocol
                and (protocol == "-1" or ports == (ref.from_port, ref.to_port))
                and ref.cidr in (rule.get("CidrIpv4"), rule.get("CidrIpv6"))
            ):
                return dict(rule)
        return None

    # --- iam.detach_policy -------------------------------------------------------------------

    @implements(declared.snapshot_policy_attachment)
    def snapshot_policy_attachment(self, action: PlannedAction) -> Snapshot:
        ref = target_ref(action, PolicyAttachmentRef)
        return PolicyAttachmentState(attached=self._attached(ref, action)).snapshot(action)

    @implements(declared.detach_policy)
    def detach_policy(self, snapshot: Snapshot) -> ActionOutcome:
        action = snapshot.action
        ref = target_ref(action, PolicyAttachmentRef)
        if not self._attached(ref, action):
            if PolicyAttachmentState.of(snapshot).attached:
                what = f"detached {ref.policy_arn} from {ref.principal_kind} {ref.principal_name}"
                return _earlier_attempt(action, what)
            return _outcome(action, False, f"{ref.policy_arn} was already detached from {ref.principal_name}")
        iam = self.client("iam", ref.region, action.target.scope)
        detach = getattr(iam, f"detach_{ref.principal_kind}_policy")
        with _aws(f"detaching {ref.policy_arn}", _needs(action)):
            detach(**{f"{ref.principal_kind.title()}Name": ref.principal_name, "PolicyArn": ref.policy_arn})
        detached = Evidence(
            source="aws.iam",
            query=f"Detach{ref.principal_kind.title()}Policy {ref.principal_name} {ref.policy_arn}",
            value="detached",
            at=datetime.now(UTC),
            note=f"policy detached ({action.idempotency_key})",
        )
        return _outcome(
            action,
            True,
            f"detached {ref.policy_arn} from {ref.principal_kind} {ref.principal_name}",
            [detached],
        )

    @implements(declared.attach_policy)
    def attach_policy(self, snapshot: Snapshot) -> ActionOutcome:
        action = snapshot.action
        ref = target_ref(action, PolicyAttachmentRef)
        if not PolicyAttachmentState.of(snapshot).attached:
            return _outcome(action, False, f"{ref.policy_arn} was not attached before containment")
        if self._attached(ref, action):
            return _outcome(action, False, f"{ref.policy_arn} is already attached to {ref.principal_name}")
        iam = self.client("iam", ref.region, action.target.scope)
        attach = getattr(iam, f"attach_{ref.principal_kind}_policy")
        with _aws(f"attaching {ref.policy_arn}", _needs(action)):
            attach(**{f"{ref.principal_kind.title()}Name": ref.principal_name, "PolicyArn": ref.policy_arn})
        return _outcome(
            action, True, f"attached {ref.policy_arn} to {ref.principal_kind} {ref.principal_name} again"
        )

    def _attached(self, ref: PolicyAttachmentRef, action: PlannedAction) -> bool:
        iam = self.client("iam", ref.region, action.target.scope)
        kind = ref.principal_kind
        with _aws(f"listing the policies of {kind} {ref.principal_name}", _needs(action)):
            pages = iam.get_paginator(f"list_attached_{kind}_policies").paginate(
                **{f"{kind.title()}Name": ref.principal_name}
            )
            return any(
                policy["PolicyArn"] == ref.policy_arn for page in pages for policy in page["AttachedPolicies"]
            )

    # --- s3.restore_public_access_block --------------------------------------------------

    @implements(declared.snapshot_public_access_block)
    def snapshot_public_access_block(self, action: PlannedAction) -> Snapshot:
        ref = target_ref(action, BucketRef)
        return PublicAccessBlockState(configuration=self._block(ref, action)).snapshot(action)

    @implements(declared.restore_public_access_block)
    def restore_public_access_block(self, snapshot: Snapshot) -> ActionOutcome:
        action = snapshot.action
        ref = target_ref(action, BucketRef)
        wanted = _wanted_block(action)
        if self._block(ref, action) == wanted:
            if PublicAccessBlockState.of(snapshot).configuration != wanted:
                return _earlier_attempt(action, f"restored the public-access block of {ref.bucket}")
            return _outcome(action, False, f"the public-access block of {ref.bucket} was already in place")
        with _aws(f"restoring the public-access block of {ref.bucket}", _needs(action)):
            self.client("s3", ref.region, action.target.scope).put_public_access_block(
                Bucket=ref.bucket, PublicAccessBlockConfiguration=wanted
            )
        restored = Evidence(
            source="aws.s3",
            query=f"PutPublicAccessBlock {ref.bucket}",
            value=json.dumps(wanted, sort_keys=True),
            at=datetime.now(UTC),
            note=f"public-access block restored ({action.idempotency_key})",
        )
        return _outcome(action, True, f"restored the public-access block of {ref.bucket}", [restored])

    @implements(declared.remove_public_access_block)
    def remove_public_access_block(self, snapshot: Snapshot) -> ActionOutcome:
        """Put back the block as it was before containment: none at all, or the weaker one."""
        action = snapshot.action
        ref = target_ref(action, BucketRef)
        before = PublicAccessBlockState.of(snapshot).configuration
        if self._block(ref, action) == before:
            return _outcome(action, False, f"the public-access block of {ref.bucket} is already as before")
        s3 = self.client("s3", ref.region, action.target.scope)
        with _aws(f"putting back the public-access block of {ref.bucket}", _needs(action)):
            if before is None:
                s3.delete_public_access_block(Bucket=ref.bucket)
            else:
                s3.put_public_access_block(Bucket=ref.bucket, PublicAccessBlockConfiguration=before)
        what = "removed" if before is None else "set back to its earlier settings"
        return _outcome(action, True, f"the public-access block of {ref.bucket} is {what}")

    def _block(self, ref: BucketRef, action: PlannedAction) -> dict[str, bool] | None:
        s3 = self.client("s3", ref.region, action.target.scope)
        with _aws(f"reading the public-access block of {ref.bucket}", _needs(action)):
            try:
                found = s3.get_public_access_block(Bucket=ref.bucket)["PublicAccessBlockConfiguration"]
            except ClientError as error:
                if _code(error) == "NoSuchPublicAccessBlockConfiguration":
                    return None
                raise
        return {key: bool(found.get(key, False)) for key in _BLOCK_KEYS.values()}

    # --- verification ----------------------------------------------------------------------

    @implements(declared.verify_access_key_disabled)
    def verify_access_key_disabled(self, check: ContainmentCheck) -> HealthReport:
        """The key is Inactive and no call signed with it succeeded after the grace period."""
        return self._verify_key(check, datetime.now(UTC))

    @implements(declared.verify_ingress_revoked)
    def verify_ingress_revoked(self, check: ContainmentCheck) -> HealthReport:
        action = check.action
        present = self._find_rule(target_ref(action, IngressRuleRef), action) is not None
        reason = f"rule {action.target.name} is {'still present' if present else 'absent'}"
        return _report(not present, reason, action, datetime.now(UTC))

    @implements(declared.verify_policy_detached)
    def verify_policy_detached(self, check: ContainmentCheck) -> HealthReport:
        action = check.action
        ref = target_ref(action, PolicyAttachmentRef)
        attached = self._attached(ref, action)
        reason = f"{ref.policy_arn} is {'still' if attached else 'not'} attached to {ref.principal_name}"
        return _report(not attached, reason, action, datetime.now(UTC))

    @implements(declared.verify_public_access_block)
    def verify_public_access_block(self, check: ContainmentCheck) -> HealthReport:
        action = check.action
        block = self._block(target_ref(action, BucketRef), action)
        held = block == _wanted_block(action)
        return _report(held, f"public-access block is {block or 'absent'}", action, datetime.now(UTC))

    @implements(declared.verify_containment)
    def verify_containment(self, check: ContainmentCheck) -> HealthReport:
        """Runs started before each action had its own verification call this: hand over to it."""
        name = activity_name(action_spec(check.action.type).verify)
        verify = next((method for method in aws_activities(self) if activity_name(method) == name), None)
        if verify is None:
            raise ActionError.failure(f"no verification for {check.action.type}")
        report: HealthReport = verify(check)
        return report

    def _verify_key(self, check: ContainmentCheck, now: datetime) -> HealthReport:
        action = check.action
        ref = target_ref(action, AccessKeyRef)
        status = self._key_status(ref, action)
        after = check.contained_at + timedelta(seconds=check.grace_s)
        use = self.credential_activity(
            CredentialQuery(
                account=action.target.scope, region=ref.region, access_key_id=ref.access_key_id, start=after
            )
        )
        evidence = [
            Evidence(source="aws.iam", query=f"ListAccessKeys {ref.user_name}", value=status, at=now),
            Evidence(
                source=use.source,
                query=f"calls signed with {ref.access_key_id} since {after.isoformat()}",
                value=use.successful_calls,
                at=now,
                note=f"{use.calls - use.successful_calls} refused",
            ),
        ]
        if status != "Inactive":
            return HealthReport(
                verdict=Verdict.UNHEALTHY, reason=f"key {ref.access_key_id} is {status}", evidence=evidence
            )
        if use.successful_calls:
            return HealthReport(
                verdict=Verdict.UNHEALTHY,
                reason=(
                    f"{use.successful_calls} call(s) signed with {ref.access_key_id} succeeded after "
                    f"containment, the last at {use.last_success_at}"
                ),
                evidence=evidence,
            )
        return HealthReport(
            verdict=Verdict.HEALTHY,
            reason=(
                f"key {ref.access_key_id} is Inactive and no call signed with it succeeded after containment "
                f"({use.calls} refused)"
            ),
            evidence=evidence,
        )

    # --- the trail ------------------------------------------------------------------------

    def _trail_calls(self, query: CredentialQuery) -> Iterator[dict[str, Any]]:
        needle = query.access_key_id or query.role_arn
        if not needle:
            raise ActionError.failure("name an access key or a role")
        logs = self.client("logs", query.region, query.account)
        arguments: dict[str, Any] = {
            "logGroupName": self.trail_log_group,
            "filterPattern": f'"{needle}"',
            "startTime": _millis(query.start),
        }
        if query.end is not None:
            arguments["endTime"] = _millis(query.end)
        excluded = set(query.exclude_event_ids)
        seen = 0
        with _aws(f"reading the trail log {self.trail_log_group}", _reads(declared.credential_activity)):
            for number, page in enumerate(logs.get_paginator("filter_log_events").paginate(**arguments)):
                _heartbeat(f"trail page {number + 1}, {seen} matching records")
                for message in page["events"]:
                    record = _record(message.get("message", ""))
                    if record is None or record.get("eventID") in excluded or not _made_with(record, query):
                        continue
                    if not _within(_event_time(record), query):
                        continue
                    yield record
                    seen += 1
                    if seen >= self.max_trail_events:
                        return


def aws_activities(containment: AwsContainment) -> list[Callable[..., Any]]:
    """The bound activity methods of ``containment``, for a worker to register."""
    return [
        getattr(containment, name)
        for name, member in vars(AwsContainment).items()
        if hasattr(member, "__temporal_activity_definition")
    ]


# --- helpers -----------------------------------------------------------------------------


@contextmanager
def _aws(doing: str, needs: Permissions) -> Iterator[None]:
    """Turn boto3 errors into what Temporal should do about them.

    Args:
        doing: what was being done, for the message.
        needs: the declared permissions of the action or read; a refusal names the
            one behind the refused call.
    """
    try:
        yield
    except ClientError as error:
        raise _from_client_error(error, doing, needs) from error
    except BotoCoreError as error:  # connection refused, timeouts: worth retrying
        raise AwsUnavailable.failure(f"{doing}: {error}") from error


def _from_client_error(error: ClientError, doing: str, needs: Permissions) -> ApplicationError:
    code = _code(error)
    if code in _NOT_FOUND:
        return TargetNotFound.failure(f"{doing}: {error}")
    if code in _DENIED:
        return PermissionDenied.failure(
            f"{doing} was refused ({code}); grant the worker's AWS identity "
            f"{needs.iam_for(error.operation_name)} (suture permissions --iam prints the policy)"
        )
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in _TRANSIENT or status >= 500:
        return AwsUnavailable.failure(f"{doing}: AWS answered {code}; retrying")
    return ActionError.failure(f"{doing}: {error}")


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _needs(action: PlannedAction) -> Permissions:
    return action_spec(action.type).permissions


def _reads(read: Callable[..., Any]) -> Permissions:
    return activity_declaration(read).permissions


def _heartbeat(progress: str) -> None:
    """Tell Temporal a long read is alive; outside a worker (tests, scripts) there is no one to tell."""
    if activity.in_activity():
        activity.heartbeat(progress)


def _outcome(
    action: PlannedAction, changed: bool, detail: str, evidence: list[Evidence] | None = None
) -> ActionOutcome:
    return ActionOutcome(action=action, changed=changed, detail=detail, evidence=evidence or [])


def _earlier_attempt(action: PlannedAction, what: str) -> ActionOutcome:
    """Already contained, though the snapshot taken before acting says it was not: a retry after a crash.

    AWS keeps no client token on these calls, so the outcome cannot prove the
    earlier attempt was suture's; it says what changed since the snapshot.
    """
    return _outcome(
        action, False, f"{what} (applied by an earlier attempt after the snapshot; nothing done twice)"
    )


def _report(held: bool, reason: str, action: PlannedAction, now: datetime) -> HealthReport:
    return HealthReport(
        verdict=Verdict.HEALTHY if held else Verdict.UNHEALTHY,
        reason=reason,
        evidence=[
            Evidence(
                source=f"aws.{action.type.partition('.')[0]}", query=str(action.target), value=reason, at=now
            )
        ],
    )


def _wanted_block(action: PlannedAction) -> dict[str, bool]:
    params = PublicAccessBlockParams.model_validate({k: v for k, v in action.params.items() if k != "target"})
    return {aws_key: bool(getattr(params, key)) for key, aws_key in _BLOCK_KEYS.items()}


def _record(message: str) -> dict[str, Any] | None:
    try:
        record = json.loads(message)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _made_with(record: dict[str, Any], query: CredentialQuery) -> bool:
    identity = record.get("userIdentity") or {}
    if query.access_key_id:
        return bool(identity.get("accessKeyId") == query.access_key_id)
    issuer = (identity.get("sessionContext") or {}).get("sessionIssuer") or {}
    return bool(identity.get("type") == "AssumedRole" and issuer.get("arn") == query.role_arn)


def _event_time(record: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(record.get("eventTime", "")).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def _within(at: datetime, query: CredentialQuery) -> bool:
    return at >= query.start and (query.end is None or at < query.end)


def _millis(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _distinct(values: Any) -> list[str]:
    return sorted({str(value) for value in values if value})


def _workload(tags: dict[str, str]) -> str:
    return tags.get("workload") or tags.get("Name") or "untagged"
