"""A policy's ``notify:`` block and escalation tiers: what is accepted, what is refused and where."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.loading import load_policy_file
from policies.models import ReliabilityPolicy
from policies.schema import Final
from suture.errors import PolicyError
from suture.models import ChannelKind

BASE = """policies:
  - name: checkout-latency
    match: {alertname: HighLatency}
    mode: supervised
    actions: [{type: k8s.rollback}]
    verify: {query: 'latency{service="$service"}', condition: '< 0.5'}
"""

NOTIFY = """    notify:
      channels:
        - {name: slack-oncall, kind: slack, url_env: SLACK_WEBHOOK_URL}
        - {name: pager, kind: pagerduty, routing_key_env: PAGERDUTY_ROUTING_KEY}
      routes:
        - labels: {team: payments}
          channels: [pager]
"""

TIERS = """    approval:
      tiers:
        - {approvers: [oncall-alice], timeout: 5m, channel: slack-oncall}
        - {approvers: [lead-bob, oncall-alice], timeout: 10m, channel: pager}
      final: act_if_reversible
"""


def load(tmp_path: Path, text: str) -> ReliabilityPolicy:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    [policy] = load_policy_file(path)
    assert isinstance(policy, ReliabilityPolicy)
    return policy


def refusal(tmp_path: Path, text: str) -> PolicyError:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as raised:
        load_policy_file(path)
    return raised.value


def test_a_policy_with_channels_and_tiers_loads_and_its_approvers_are_every_tiers(tmp_path: Path) -> None:
    policy = load(tmp_path, BASE + NOTIFY + TIERS)
    assert policy.notify is not None
    assert [(c.name, c.kind) for c in policy.notify.channels] == [
        ("slack-oncall", ChannelKind.SLACK),
        ("pager", ChannelKind.PAGERDUTY),
    ]
    assert policy.approval is not None and policy.approval.final == Final.ACT_IF_REVERSIBLE
    assert policy.approval.approvers == ["oncall-alice", "lead-bob"]
    assert [tier.timeout for tier in policy.approval.tiers] == [300.0, 600.0]


def test_a_tier_naming_a_channel_the_policy_lacks_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, BASE + NOTIFY + TIERS.replace("channel: pager", "channel: sms"))
    assert "approval tier 2 names channel 'sms'" in str(error)


def test_a_route_naming_an_unknown_channel_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, BASE + NOTIFY.replace("channels: [pager]", "channels: [email]") + TIERS)
    assert "unknown channels ['email']" in str(error)


def test_an_unknown_key_in_a_channel_is_refused_with_its_line(tmp_path: Path) -> None:
    text = BASE + NOTIFY.replace("url_env: SLACK_WEBHOOK_URL", "url_env: X, token: secret") + TIERS
    error = refusal(tmp_path, text)
    assert "token" in str(error) and error.location.endswith(":9")


def test_an_unknown_channel_kind_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, BASE + NOTIFY.replace("kind: slack", "kind: teams") + TIERS)
    assert "kind" in str(error)


def test_an_unknown_final_fallback_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, BASE + NOTIFY + TIERS.replace("act_if_reversible", "act_anyway"))
    assert "final" in str(error)


def test_a_tier_without_approvers_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, BASE + NOTIFY + TIERS.replace("[lead-bob, oncall-alice]", "[]"))
    assert "approvers" in str(error)
