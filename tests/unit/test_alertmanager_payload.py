"""The Alertmanager webhook model: what it accepts, what it refuses, and why."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from suture.identity import reliability_workflow_id
from workers.alertmanager import AlertmanagerPayload, service_of

RECEIVED = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)


def payload(**changes: Any) -> dict[str, Any]:
    """A notification as Alertmanager 0.27 sends it, including keys suture does not use."""
    body: dict[str, Any] = {
        "receiver": "suture",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "CheckoutLatencyHigh",
                    "namespace": "shop",
                    "service": "checkout",
                    "severity": "page",
                },
                "annotations": {"summary": "p99 latency above 500ms"},
                "startsAt": "2026-03-01T11:59:58.123456789Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=...",
                "fingerprint": "6f3b0c1e2d4a5b69",
                "silenceURL": "http://alertmanager:9093/#/silences/new",
            }
        ],
        "groupLabels": {"alertname": "CheckoutLatencyHigh"},
        "commonLabels": {"alertname": "CheckoutLatencyHigh", "namespace": "shop"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": '{}:{alertname="CheckoutLatencyHigh"}',
        "truncatedAlerts": 0,
    }
    body.update(changes)
    return body


def with_alert(**changes: Any) -> dict[str, Any]:
    body = payload()
    body["alerts"][0].update(changes)
    return body


def without(key: str) -> dict[str, Any]:
    body = payload()
    del body["alerts"][0][key]
    return body


def parse(body: dict[str, Any]) -> AlertmanagerPayload:
    return AlertmanagerPayload.model_validate_json(json.dumps(body))


def reason(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        parse(body)
    return str(caught.value)


def test_a_real_notification_is_accepted_with_the_keys_suture_does_not_use() -> None:
    parsed = parse(payload())

    assert parsed.version == "4"
    assert parsed.external_url == "http://alertmanager:9093"
    assert parsed.alerts[0].fingerprint == "6f3b0c1e2d4a5b69"
    assert parsed.alerts[0].generator_url.startswith("http://prometheus:9090")


def test_nanosecond_timestamps_are_read_and_the_zero_end_time_means_still_firing() -> None:
    alert = parse(payload()).alerts[0]

    assert alert.starts_at == datetime(2026, 3, 1, 11, 59, 58, 123456, tzinfo=UTC)
    assert alert.ends_at is None


def test_the_notice_for_the_loop_carries_the_alert_and_when_it_was_received() -> None:
    notice = parse(payload()).alerts[0].to_notice(RECEIVED)

    assert notice.received_at == RECEIVED
    assert notice.labels["service"] == "checkout"
    assert notice.annotations == {"summary": "p99 latency above 500ms"}
    assert notice.status == "firing"


def test_firing_and_resolved_notifications_of_one_episode_name_the_same_run() -> None:
    firing = parse(payload()).alerts[0].to_notice(RECEIVED)
    resolved_body = with_alert(status="resolved", endsAt="2026-03-01T12:10:00Z")
    resolved = parse(resolved_body).alerts[0].to_notice(RECEIVED)

    assert resolved.ends_at == datetime(2026, 3, 1, 12, 10, tzinfo=UTC)
    assert reliability_workflow_id(firing) == reliability_workflow_id(resolved)


def test_a_new_firing_episode_of_the_same_alert_names_a_new_run() -> None:
    first = parse(payload()).alerts[0].to_notice(RECEIVED)
    later = parse(with_alert(startsAt="2026-03-02T08:00:00Z")).alerts[0].to_notice(RECEIVED)

    assert reliability_workflow_id(first) != reliability_workflow_id(later)


def test_the_service_is_namespace_slash_service_or_deployment() -> None:
    assert service_of({"namespace": "shop", "service": "checkout"}) == "shop/checkout"
    assert service_of({"namespace": "shop", "deployment": "cart"}) == "shop/cart"
    assert service_of({"alertname": "Lonely"}) == "-/-"


def test_an_alert_without_fingerprint_is_refused() -> None:
    assert "fingerprint" in reason(without("fingerprint"))


def test_a_fingerprint_that_cannot_be_part_of_a_workflow_id_is_refused() -> None:
    assert "fingerprint" in reason(with_alert(fingerprint="../../etc"))
    assert "fingerprint" in reason(with_alert(fingerprint=""))


def test_an_unknown_alert_status_is_refused() -> None:
    assert "status" in reason(with_alert(status="pending"))


def test_an_unknown_notification_status_is_refused() -> None:
    assert "status" in reason(payload(status="broken"))


def test_a_start_time_that_is_not_a_time_is_refused() -> None:
    assert "startsAt" in reason(with_alert(startsAt="yesterday"))


def test_a_start_time_without_a_timezone_is_refused() -> None:
    assert "startsAt" in reason(with_alert(startsAt="2026-03-01T11:59:58"))


def test_the_zero_start_time_is_refused() -> None:
    assert "startsAt" in reason(with_alert(startsAt="0001-01-01T00:00:00Z"))


def test_an_end_time_that_is_not_a_time_is_refused() -> None:
    assert "endsAt" in reason(with_alert(endsAt="2026-02-30T00:00:00Z"))


def test_a_missing_start_time_is_refused() -> None:
    assert "startsAt" in reason(without("startsAt"))


def test_version_3_is_refused() -> None:
    assert "version" in reason(payload(version="3"))


def test_a_notification_without_alerts_is_refused() -> None:
    assert "alerts" in reason(payload(alerts=[]))


def test_labels_must_be_strings() -> None:
    body = copy.deepcopy(payload())
    body["alerts"][0]["labels"]["replicas"] = 3

    assert "labels" in reason(body)


def test_a_body_that_is_not_json_is_refused() -> None:
    with pytest.raises(ValidationError, match="Invalid JSON"):
        AlertmanagerPayload.model_validate_json(b'{"version": "4", ')
