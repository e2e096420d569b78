"""Label values reach PromQL only quoted for their place, or not at all."""

from __future__ import annotations

import promql_parser
import pytest

from policies.queries import (
    MAX_LABEL_VALUE,
    LabelRefused,
    build_query,
    check_template,
    escape_string,
    quote_regex,
)

LATENCY = 'latency_p99_seconds{namespace="$namespace",service="$service"}'
SHOP = {"namespace": "shop", "service": "checkout"}


def matchers_of(query: str) -> dict[str, str]:
    selector = promql_parser.parse(query)
    assert isinstance(selector, promql_parser.VectorSelector), f"{query} is no longer one selector"
    return {matcher.name: matcher.value for matcher in selector.matchers.matchers}


def test_a_plain_label_is_filled_in() -> None:
    assert build_query(LATENCY, SHOP) == 'latency_p99_seconds{namespace="shop",service="checkout"}'


@pytest.mark.parametrize(
    "value",
    [
        'x"} * 0 or absent_x{a="',
        'x"} or vector(0) #',
        "back\\slash",
        "ends with a backslash \\",
        "}",
        " or ",
        "é🚀 ünïcödé",
        "'single'",
        "`raw`",
        "$service",
    ],
)
def test_a_hostile_label_stays_one_matcher_value(value: str) -> None:
    query = build_query(LATENCY, {**SHOP, "service": value})
    assert matchers_of(query) == {"namespace": "shop", "service": value}


def test_the_injection_from_the_report_cannot_turn_verification_into_a_constant() -> None:
    query = build_query(LATENCY, {**SHOP, "service": 'x"} * 0 or absent_x{a="'})
    assert query == 'latency_p99_seconds{namespace="shop",service="x\\"} * 0 or absent_x{a=\\""}'


@pytest.mark.parametrize(
    "value", ["line\nbreak", "nul\x00", "bell\x07", "bidi\u202eoverride", "zero\u200bwidth"]
)
def test_a_label_with_control_or_format_characters_is_refused(value: str) -> None:
    with pytest.raises(LabelRefused, match="'service'"):
        build_query(LATENCY, {**SHOP, "service": value})


def test_an_overlong_label_is_refused() -> None:
    with pytest.raises(LabelRefused, match="characters long"):
        build_query(LATENCY, {**SHOP, "service": "a" * (MAX_LABEL_VALUE + 1)})


def test_a_missing_label_is_refused_rather_than_matching_every_series() -> None:
    with pytest.raises(LabelRefused, match="does not carry it"):
        build_query(LATENCY, {"namespace": "shop"})


def test_nothing_is_refused_when_asked_only_to_escape() -> None:
    query = build_query(LATENCY, {"namespace": "shop\nx"}, refuse_unsafe=False)
    assert query == 'latency_p99_seconds{namespace="shop\\nx",service="${service}"}'
    assert matchers_of(query)["namespace"] == "shop\nx"


def test_a_regex_matcher_matches_the_label_literally() -> None:
    template = 'up{pod=~"$deployment-[a-z0-9]+"}'
    query = build_query(template, {"deployment": ".*|x"})
    assert query == 'up{pod=~"\\\\.\\\\*\\\\|x-[a-z0-9]+"}'
    assert matchers_of(query)["pod"] == "\\.\\*\\|x-[a-z0-9]+"


def test_a_single_quoted_matcher_escapes_single_quotes() -> None:
    query = build_query("up{service='$service'}", {"service": "it's"})
    assert matchers_of(query)["service"] == "it's"


def test_escaping_follows_promql_string_rules() -> None:
    assert escape_string('a"b\\c\td') == 'a\\"b\\\\c\\u0009d'
    assert escape_string("'", quote="'") == "\\'"
    assert quote_regex("a.b+c(d)") == "a\\.b\\+c\\(d\\)"


def test_dollar_signs_that_name_no_label_stay_as_written() -> None:
    template = 'label_replace(up{job="$$job"}, "dst", "$1", "src", "(.*)$")'
    assert check_template(template) == []
    assert build_query(template, {}) == 'label_replace(up{job="$job"}, "dst", "$1", "src", "(.*)$")'


@pytest.mark.parametrize(
    "template",
    [
        "up{service=$service}",
        "${metric}_total",
        'label_replace(up, "dst", "$service", "src", "(.*)")',
        "up{service=`$service`}",
        'up{service="$service}',
    ],
)
def test_a_placeholder_outside_a_quoted_matcher_value_is_refused_at_load_time(template: str) -> None:
    with pytest.raises(ValueError):
        check_template(template)
