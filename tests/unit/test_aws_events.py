"""EventBridge envelopes of CloudTrail records, as the security loop receives them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from workers.aws_events import EventBridgeEnvelope, _region_of, _unwrap

NOW = datetime(2026, 11, 25, 3, 0, 5, tzinfo=UTC)


def body(identity: dict[str, Any], **detail: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-11-25T03:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventTime": "2026-11-25T03:00:00Z",
            "eventSource": "s3.amazonaws.com",
            "eventName": "ListBuckets",
            "awsRegion": "us-east-1",
            "sourceIPAddress": "203.0.113.66",
            "userIdentity": identity,
            "eventID": "ct-1",
            **detail,
        },
    }


def test_a_user_key_call_becomes_an_event_with_its_key_and_source() -> None:
    identity = {"type": "IAMUser", "userName": "ci-deployer", "accessKeyId": "AKIAEXAMPLEKEY00001"}

    event = EventBridgeEnvelope.model_validate(body(identity)).to_event(NOW)

    assert event.event_id == "6a7e8feb-b491-4cf7-a9f1-bf3703467718"
    assert event.cloudtrail_event_id == "ct-1"
    assert event.principal.access_key_id == "AKIAEXAMPLEKEY00001"
    assert (event.source_ip, event.received_at, event.request_parameters) == ("203.0.113.66", NOW, {})


def test_a_role_session_names_the_role_that_issued_it() -> None:
    role = "arn:aws:iam::123456789012:role/shared-app"
    identity = {
        "type": "AssumedRole",
        "arn": "arn:aws:sts::123456789012:assumed-role/shared-app/i-0abc",
        "accessKeyId": "ASIAEXAMPLESESSION1",
        "sessionContext": {"sessionIssuer": {"type": "Role", "arn": role, "userName": "shared-app"}},
    }

    event = EventBridgeEnvelope.model_validate(body(identity)).to_event(NOW)

    assert event.principal.role_arn == role


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"account": "1234"}, "account"),
        ({"id": "has spaces in it"}, "id"),
        ({"detail-type": "Scheduled Event"}, "detail-type"),
    ],
)
def test_envelopes_that_cannot_name_a_run_are_refused(change: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as raised:
        EventBridgeEnvelope.model_validate({**body({"type": "IAMUser"}), **change})

    assert raised.value.errors()[0]["loc"] == (where,)


def test_a_record_without_its_caller_is_refused() -> None:
    broken = body({"type": "IAMUser"})
    del broken["detail"]["userIdentity"]

    with pytest.raises(ValidationError, match="userIdentity"):
        EventBridgeEnvelope.model_validate(broken)


def test_sns_notifications_are_unwrapped_and_queue_urls_name_their_region() -> None:
    assert _unwrap('{"Type": "Notification", "Message": "{\\"id\\": \\"x\\"}"}') == {"id": "x"}
    assert _unwrap('{"id": "x"}') == {"id": "x"}
    assert _region_of("https://sqs.eu-west-1.amazonaws.com/123456789012/events") == "eu-west-1"
    assert _region_of("http://127.0.0.1:5000/123456789012/events") is None
