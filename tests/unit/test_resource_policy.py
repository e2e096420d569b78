"""The resource loop's judgement of waste, its price arithmetic and its gates, as pure functions."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from policies.loading import load_policy_file
from policies.prices import load_price_table
from policies.resource import (
    ResourcePolicy,
    gate_sweep,
    judge_fleet,
    judge_workload,
    right_sized,
)
from suture.errors import PolicyError
from suture.fleet import ContainerRequests, UtilisationSummary, WasteClass, Workload, WorkloadKind
from suture.models import Mode

PRICES = load_price_table()
DEFAULTS = load_policy_file(Path("policies/defaults/resource.yaml"))
POLICIES = [policy for policy in DEFAULTS if isinstance(policy, ResourcePolicy)]


def gpu(name: str, env: str = "dev", owner: str = "ml-team", instance_type: str = "p3.2xlarge") -> Workload:
    labels = {key: value for key, value in (("env", env), ("owner", owner)) if value}
    return Workload(
        kind=WorkloadKind.EC2_INSTANCE,
        scope="123456789012",
        name=name,
        labels=labels,
        region="us-east-1",
        instance_type=instance_type,
        state="running",
    )


def deployment(name: str, env: str = "staging", cpu: float = 4.0, memory: float = 8.0) -> Workload:
    return Workload(
        kind=WorkloadKind.DEPLOYMENT,
        scope="shop",
        name=name,
        labels={"env": env, "owner": "shop-team"},
        replicas=3,
        containers=[ContainerRequests(name="app", cpu_cores=cpu, memory_gib=memory)],
    )


def usage(
    key: str,
    p95: float,
    peak: float | None = None,
    days: float = 30.0,
    resource: str = "gpu",
    bursts: float = 0.0,
) -> dict[str, UtilisationSummary]:
    return {
        resource: UtilisationSummary(
            key=key,
            resource=resource,
            p95=p95,
            max=peak if peak is not None else p95,
            history_days=days,
            burst_days=bursts,
        )
    }


def test_an_idle_dev_gpu_instance_is_stopped_and_saves_its_list_price_for_a_month() -> None:
    workload = gpu("i-idle")
    judged = judge_workload(workload, usage(workload.key, 0.04, 0.06), POLICIES, PRICES, "sweep-1")
    assert judged.waste == WasteClass.IDLE
    assert judged.finding is not None
    assert judged.finding.action.type == "ec2.stop_instances"
    assert judged.finding.mode == Mode.AUTONOMOUS
    assert judged.finding.savings_usd_month == round(3.06 * 730, 2)
    assert judged.finding.burn_usd_hour == 3.06


def test_a_production_instance_is_left_alone_however_idle() -> None:
    workload = gpu("i-prod", env="production")
    judged = judge_workload(workload, usage(workload.key, 0.01), POLICIES, PRICES, "sweep-1")
    assert judged.waste == WasteClass.PRODUCTION_PROTECTED
    assert judged.finding is None


def test_a_nightly_job_that_bursts_is_protected_though_its_percentile_is_low() -> None:
    workload = gpu("i-batch")
    judged = judge_workload(
        workload, usage(workload.key, 0.03, peak=0.95, bursts=0.97), POLICIES, PRICES, "s"
    )
    assert judged.waste == WasteClass.BURSTY_PROTECTED


def test_a_workload_younger_than_thirty_days_is_not_acted_on() -> None:
    workload = gpu("i-new")
    judged = judge_workload(workload, usage(workload.key, 0.01, days=12), POLICIES, PRICES, "s")
    assert judged.waste == WasteClass.TOO_YOUNG


def test_an_untagged_instance_is_never_a_candidate() -> None:
    workload = gpu("i-anon", owner="")
    judged = judge_workload(workload, usage(workload.key, 0.01), POLICIES, PRICES, "s")
    assert judged.waste == WasteClass.UNTAGGED


def test_an_overprovisioned_deployment_is_right_sized_to_its_percentile_plus_headroom() -> None:
    workload = deployment("api")
    summaries = {
        **usage(workload.key, 0.1, peak=0.2, resource="cpu"),
        **usage(workload.key, 0.25, peak=0.3, resource="memory"),
    }
    judged = judge_workload(workload, summaries, POLICIES, PRICES, "s")
    assert judged.waste == WasteClass.OVERPROVISIONED
    assert judged.finding is not None and judged.finding.mode == Mode.SUPERVISED
    assert judged.finding.action.params["requests"] == {"app": {"cpu_cores": 0.55, "memory_gib": 2.625}}
    saved = 3 * ((4 - 0.55) * 0.04048 + (8 - 2.625) * 0.004445) * 730
    assert judged.finding.savings_usd_month == pytest.approx(saved, abs=0.01)


def test_right_sizing_never_raises_a_request() -> None:
    workload = deployment("busy", cpu=1.0)
    sized = right_sized(workload, usage(workload.key, 0.9, resource="cpu"), POLICIES[2].rules)
    assert sized["app"]["cpu_cores"] == 1.0


def test_the_fleet_judgement_keeps_candidates_largest_saving_first_and_counts_the_rest() -> None:
    fleet = [
        gpu("i-small", instance_type="g4dn.xlarge"),
        gpu("i-big", instance_type="p4d.24xlarge"),
        gpu("i-x", owner=""),
    ]
    summaries = {workload.key: usage(workload.key, 0.02) for workload in fleet}
    judged = judge_fleet(fleet, summaries, POLICIES, PRICES, "s")
    assert [finding.workload.name for finding in judged.findings] == ["i-big", "i-small"]
    assert judged.counts == {WasteClass.IDLE: 2, WasteClass.UNTAGGED: 1}
    assert judged.untagged == ["123456789012/i-x"]


def findings(count: int) -> list:  # type: ignore[type-arg]
    fleet = [gpu(f"i-{index:03}") for index in range(count)]
    summaries = {workload.key: usage(workload.key, 0.02) for workload in fleet}
    return judge_fleet(fleet, summaries, POLICIES, PRICES, "s").findings


def test_at_most_five_percent_of_the_fleet_is_acted_on_and_the_rest_is_dry_run() -> None:
    gates = gate_sweep(fleet_size=100, tagged=100, findings=findings(12), acted_today=0)
    modes = [candidate.mode for candidate in gates.candidates]
    assert modes.count(Mode.AUTONOMOUS) == 5
    assert modes.count(Mode.DRY_RUN) == 7
    assert "daily cap" in gates.candidates[-1].note


def test_actions_taken_earlier_today_count_against_the_cap() -> None:
    gates = gate_sweep(fleet_size=100, tagged=100, findings=findings(12), acted_today=4)
    assert [candidate.mode for candidate in gates.candidates].count(Mode.AUTONOMOUS) == 1


def test_a_stopped_instance_stays_in_the_fleet_and_is_never_a_candidate() -> None:
    stopped = gpu("i-stopped").model_copy(update={"state": "stopped"})
    fleet = [stopped, gpu("i-idle")]
    summaries = {workload.key: usage(workload.key, 0.0) for workload in fleet}
    judged = judge_fleet(fleet, summaries, POLICIES, PRICES, "s")
    assert judged.fleet_size == 2
    assert judged.counts == {WasteClass.STOPPED: 1, WasteClass.IDLE: 1}
    assert [finding.workload.name for finding in judged.findings] == ["i-idle"]


def test_what_was_stopped_this_morning_counts_against_the_afternoons_cap() -> None:
    fleet = [gpu(f"i-{index:03}") for index in range(100)]
    summaries = {workload.key: usage(workload.key, 0.02) for workload in fleet}
    morning = judge_fleet(fleet, summaries, POLICIES, PRICES, "morning")
    stopped = gate_sweep(morning.fleet_size, morning.tagged, morning.findings, morning.acted_today)
    acted = [c.finding.workload for c in stopped.candidates if c.mode == Mode.AUTONOMOUS]
    assert len(acted) == 5
    names = {workload.name for workload in acted}
    afternoon_fleet = [
        workload.model_copy(update={"state": "stopped"}) if workload.name in names else workload
        for workload in fleet
    ]
    afternoon = judge_fleet(
        afternoon_fleet, summaries, POLICIES, PRICES, "afternoon", {str(w.target) for w in acted}
    )
    assert (afternoon.fleet_size, afternoon.acted_today) == (100, 5)
    gates = gate_sweep(afternoon.fleet_size, afternoon.tagged, afternoon.findings, afternoon.acted_today)
    assert [candidate.mode for candidate in gates.candidates].count(Mode.AUTONOMOUS) == 0
    assert not names & {candidate.finding.workload.name for candidate in gates.candidates}


def test_below_ninety_five_percent_tag_coverage_nothing_destructive_happens() -> None:
    gates = gate_sweep(fleet_size=100, tagged=94, findings=findings(3), acted_today=0)
    assert {candidate.mode for candidate in gates.candidates} == {Mode.DRY_RUN}
    assert "tag coverage" in gates.candidates[0].note


def test_a_new_resource_policy_starts_in_dry_run() -> None:
    policy = ResourcePolicy.model_validate(
        {"name": "new", "finding": "idle", "actions": [{"type": "ec2.stop_instances"}]}
    )
    assert policy.mode == Mode.DRY_RUN


def test_a_policy_cannot_judge_on_less_than_thirty_days() -> None:
    with pytest.raises(ValidationError, match="30d"):
        ResourcePolicy.model_validate(
            {
                "name": "hasty",
                "finding": "idle",
                "rules": {"min_history": "7d"},
                "actions": [{"type": "ec2.stop_instances"}],
            }
        )


def test_a_resource_policy_with_a_typo_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "resource.yaml"
    path.write_text("policies:\n  - name: x\n    loop: resource\n    finding: idle\n    actons: []\n")
    with pytest.raises(PolicyError, match=r"resource.yaml:5"):
        load_policy_file(path)


def test_the_price_table_names_its_region_and_date_and_prices_gpu_types() -> None:
    assert PRICES.region == "us-east-1" and PRICES.as_of
    for instance_type in ("p3.2xlarge", "p4d.24xlarge", "g5.xlarge", "g4dn.xlarge", "m5.large", "t3.medium"):
        assert PRICES.instance_hour(instance_type) is not None
