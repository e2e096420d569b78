"""Policies that cannot surprise: the loader refuses what YAML or a schema would let through.

Each test names a file that an earlier loader accepted (or crashed on) and shows
it is now refused with ``file:line``, or accepted only when the risk is
acknowledged in the policy itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from activities.policy_store import PolicyStore
from policies.loading import InvalidPolicies, check_policy_files, load_policies, load_policy_file
from policies.schema import Risk
from suture.errors import PolicyError
from tests.unit.test_policies import ROLLBACK, line_of, write


def problems_of(path: Path) -> list[str]:
    with pytest.raises(InvalidPolicies) as raised:
        load_policy_file(path)
    return [str(problem) for problem in raised.value.problems]


def test_a_key_given_twice_is_refused_at_its_second_line(tmp_path: Path) -> None:
    text = ROLLBACK.replace("mode: autonomous", "mode: observe\n    mode: autonomous")
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    second = line_of(text, "mode: autonomous")
    assert problem.startswith(f"{path}:{second}: duplicate key 'mode' (first at line {second - 1})")


def test_two_policies_with_one_name_in_one_file_are_refused(tmp_path: Path) -> None:
    item = ROLLBACK.removeprefix("policies:\n")
    text = ROLLBACK + item
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:{len(ROLLBACK.splitlines()) + 1}: policy 'rollback-latency'")
    assert f"also defined in this file at line {line_of(text, 'name: rollback-latency')}" in problem


def test_a_name_used_in_two_files_is_reported_in_the_second(tmp_path: Path) -> None:
    first = write(tmp_path, ROLLBACK, "a.yaml")
    second = write(tmp_path, ROLLBACK, "b.yaml")
    with pytest.raises(InvalidPolicies) as raised:
        load_policies([tmp_path])
    [problem] = raised.value.problems
    assert problem.location == f"{second}:2"
    assert f"also defined in {first}:2" in problem.message


@pytest.mark.parametrize(
    ("change", "key", "risk"),
    [
        (("match:\n      alertname: HighLatency", "match: {}"), "match: {}", Risk.CATCH_ALL_AUTONOMOUS),
        (("min_confidence: 0.8", "min_confidence: 0"), "min_confidence", Risk.NO_CONFIDENCE_FLOOR),
        (("window: 60s", "window: 60s\n    cooldown: 0s"), "cooldown", Risk.ZERO_COOLDOWN),
        (("window: 60s", "window: 0s"), "window", Risk.ZERO_VERIFICATION_WINDOW),
        (
            ("- type: k8s.rollback", "- type: k8s.scale\n        params: {by: 2, max_replicas: 100000}"),
            "max_replicas",
            Risk.LARGE_SCALE_LIMIT,
        ),
    ],
)
def test_a_dangerous_setting_is_refused_unless_acknowledged(
    tmp_path: Path, change: tuple[str, str], key: str, risk: Risk
) -> None:
    text = ROLLBACK.replace(*change)
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:{line_of(text, key)}: rollback-latency: ")
    assert f"acknowledge: [{risk}]" in problem

    acknowledged = text.replace("mode: autonomous", f"mode: autonomous\n    acknowledge: [{risk}]")
    [policy] = load_policy_file(write(tmp_path, acknowledged))
    assert policy.acknowledge == [risk]


def test_an_acknowledgement_must_name_a_known_risk(tmp_path: Path) -> None:
    text = ROLLBACK.replace("mode: autonomous", "mode: autonomous\n    acknowledge: [anything_goes]")
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:{line_of(text, 'acknowledge')}: policies.0.acknowledge.0: ")


RECORDED_VERSIONS = {
    "rollback-latency-after-rollout": "9f6b7349dcfd",
    "scale-out-saturated": "cf2a7732b4eb",
    "contain-anomalous-access-key": "40f7bda0a3dd",
    "brief-on-shared-role-anomaly": "a2df9478ac6a",
    "sandbox-memory-leak": "cd0850bdf579",
}
"""Versions the shipped policies had before acknowledge, tiers, notify, trust and the graph
settings existed; runs recorded then name these."""


def test_fields_added_later_leave_recorded_versions_unchanged_while_unset() -> None:
    shipped = Path(__file__).parents[2]
    loaded = {
        policy.name: policy.version
        for policy in load_policies([shipped / "policies" / "defaults", shipped / "sandbox" / "policies"])
    }
    assert {name: loaded[name] for name in RECORDED_VERSIONS} == RECORDED_VERSIONS


def test_setting_a_later_field_changes_the_version(tmp_path: Path) -> None:
    [plain] = load_policy_file(write(tmp_path, ROLLBACK))
    acknowledged = ROLLBACK.replace("mode: autonomous", "mode: autonomous\n    acknowledge: [zero_cooldown]")
    [changed] = load_policy_file(write(tmp_path, acknowledged))
    assert changed.version != plain.version


def test_invalid_promql_is_refused_at_the_line_of_the_query(tmp_path: Path) -> None:
    text = ROLLBACK.replace('latency_p99{namespace="$namespace", deployment="$deployment"}', "up{ )) sum(")
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:{line_of(text, 'query:')}: rollback-latency: not valid PromQL: ")


def test_a_label_placeholder_outside_a_matcher_is_refused(tmp_path: Path) -> None:
    text = ROLLBACK.replace('deployment="$deployment"}', 'deployment="x"} * $deployment')
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:{line_of(text, 'query:')}: policies.0.verify.query: ")
    assert "$deployment stands outside a label matcher" in problem


def test_a_file_that_is_not_utf8_gets_one_line_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(ROLLBACK.replace("HighLatency", "HighLaténcy").encode("latin-1"))
    [problem] = problems_of(path)
    assert problem == (
        f"{path}:{line_of(ROLLBACK, 'HighLatency')}: not UTF-8 text (byte 0xe9 at offset "
        f"{ROLLBACK.index('HighLatency') + len('HighLat')}); save the file as UTF-8"
    )


def test_every_problem_in_a_file_is_reported_at_once_in_line_order(tmp_path: Path) -> None:
    risky = (
        ROLLBACK.replace("mode: autonomous", "mode: observe\n    mode: autonomous")
        .replace("min_confidence: 0.8", "min_confidence: 0")
        .replace("window: 60s", "window: 60s\n    cooldown: 0s")
        .replace("- type: k8s.rollback", "- type: k8s.delete")
    )
    misspelt = ROLLBACK.removeprefix("policies:\n").replace("rollback-latency", "misspelt")
    misspelt = misspelt.replace("window: 60s", "window: 60s\n    colour: red")
    bad_query = ROLLBACK.removeprefix("policies:\n").replace("rollback-latency", "bad-query")
    bad_query = bad_query.replace(
        'latency_p99{namespace="$namespace", deployment="$deployment"}', "up{ )) sum("
    )
    text = risky + misspelt + bad_query
    path = write(tmp_path, text)

    problems = problems_of(path)

    lines = text.splitlines()
    expected = [
        line_of(text, "mode: autonomous"),
        line_of(text, "min_confidence: 0"),
        line_of(text, "k8s.delete"),
        line_of(text, "cooldown: 0s"),
        line_of(text, "colour"),
        next(n for n, line in enumerate(lines, 1) if "up{ )) sum(" in line),
    ]
    assert [int(problem.split(":")[1]) for problem in problems] == expected
    assert all(problem.startswith(f"{path}:") for problem in problems)


def test_the_worker_refuses_what_policy_check_refuses(tmp_path: Path) -> None:
    write(tmp_path, ROLLBACK.replace("mode: autonomous", "mode: observe\n    mode: autonomous"))
    with pytest.raises(PolicyError, match="duplicate key 'mode'"):
        PolicyStore([tmp_path])


def test_the_worker_picks_up_an_edit_that_makes_a_file_dangerous(tmp_path: Path) -> None:
    path = write(tmp_path, ROLLBACK)
    store = PolicyStore([tmp_path])
    path.write_text(ROLLBACK.replace("window: 60s", "window: 0s"), encoding="utf-8")
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    with pytest.raises(PolicyError, match="zero_verification_window"):
        store.policies()


def test_the_shipped_policies_pass_the_check() -> None:
    root = Path(__file__).parents[2]
    files = [
        *sorted((root / "policies" / "defaults").glob("*.yaml")),
        *sorted((root / "sandbox" / "policies").glob("*.yaml")),
        *sorted((root / "sandbox" / "bench_policies").glob("*.yaml")),
    ]
    loaded, problems = check_policy_files(files)
    assert problems == []
    assert len(loaded) > 10


def test_an_autonomous_security_policy_for_every_account_and_signal_is_refused(tmp_path: Path) -> None:
    text = (
        "policies:\n"
        "  - name: contain-everything\n"
        "    loop: security\n"
        "    match:\n"
        "      accounts: ['*']\n"
        "    mode: autonomous\n"
        "    risk: {act_at: 0, ignore_below: 0}\n"
    )
    path = write(tmp_path, text)
    assert [problem.split(": ", 1)[0] for problem in problems_of(path)] == [f"{path}:4", f"{path}:7"]
    acknowledged = text.replace(
        "mode: autonomous", "mode: autonomous\n    acknowledge: [catch_all_autonomous, no_confidence_floor]"
    )
    [policy] = load_policy_file(write(tmp_path, acknowledged))
    assert policy.name == "contain-everything"
