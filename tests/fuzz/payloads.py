"""Valid payloads of both ingress doors, the seeds every mutation starts from."""

from __future__ import annotations

from typing import Any

TOKEN = "fuzz-token"


def alertmanager_notification() -> dict[str, Any]:
    """An Alertmanager webhook (version 4) with one firing and one resolved alert."""
    firing = {
        "status": "firing",
        "labels": {"alertname": "CheckoutLatencyHigh", "namespace": "shop", "service": "checkout"},
        "annotations": {"summary": "p99 latency above 500ms"},
        "startsAt": "2026-03-01T11:59:58Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": "6f3b0c1e2d4a5b69",
    }
    resolved = {
        **firing,
        "status": "resolved",
        "endsAt": "2026-03-01T12:10:00Z",
        "fingerprint": "0a1b2c3d4e5f6071",
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="CheckoutLatencyHigh"}',
        "status": "firing",
        "receiver": "suture",
        "groupLabels": {"alertname": "CheckoutLatencyHigh"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [firing, resolved],
        "truncatedAlerts": 0,
    }


def aws_security_group_opened() -> dict[str, Any]:
    """An EventBridge envelope of a CloudTrail AuthorizeSecurityGroupIngress record."""
    record = {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "IAMUser",
            "arn": "arn:aws:iam::123456789012:user/ci-deployer",
            "accountId": "123456789012",
            "accessKeyId": "AKIAEXAMPLEKEY00001",
            "userName": "ci-deployer",
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": "arn:aws:iam::1:role/x"}},
        },
        "eventTime": "2026-11-25T03:00:00Z",
        "eventSource": "ec2.amazonaws.com",
        "eventName": "AuthorizeSecurityGroupIngress",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.66",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": {
            "groupId": "sg-0web",
            "ipPermissions": {
                "items": [
                    {
                        "ipProtocol": "tcp",
                        "fromPort": 22,
                        "toPort": 22,
                        "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]},
                    }
                ]
            },
        },
        "responseElements": {"_return": True},
        "eventID": "3b9d1a52-0c1e-4f3a-9a41-7d4c9e2b8f10",
        "recipientAccountId": "123456789012",
    }
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2026-11-25T03:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": record,
    }
