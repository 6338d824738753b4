"""Durations: Go's time.ParseDuration grammar and range, parsed once into nanoseconds."""

from __future__ import annotations

import tomllib

import pytest

from nodecfg.containerd.durations import Duration, DurationError, parse_duration
from nodecfg.spec.loader import SpecError, load_config
from tests.test_render_hosts import hosts, text

S, MS, US, M, H = 10**9, 10**6, 10**3, 60 * 10**9, 3600 * 10**9
# Go's own table (src/time/time_test.go, parseDurationTests): what ParseDuration returns.
GO_ACCEPTS = [
    ("0", 0), ("5s", 5 * S), ("30s", 30 * S), ("1478s", 1478 * S),
    ("-5s", -5 * S), ("+5s", 5 * S), ("-0", 0), ("+0", 0),
    ("5.0s", 5 * S), ("5.6s", 5 * S + 600 * MS), ("5.s", 5 * S), (".5s", 500 * MS), ("1.0s", S), ("1.00s", S),
    ("1.004s", S + 4 * MS), ("1.0040s", S + 4 * MS), ("100.00100s", 100 * S + MS),
    ("10ns", 10), ("11us", 11 * US), ("12\u00b5s", 12 * US), ("12\u03bcs", 12 * US), ("13ms", 13 * MS),
    ("14s", 14 * S), ("15m", 15 * M), ("16h", 16 * H),
    ("3h30m", 3 * H + 30 * M), ("10.5s4m", 4 * M + 10 * S + 500 * MS), ("-2m3.4s", -(2 * M + 3 * S + 400 * MS)),
    ("1h2m3s4ms5us6ns", H + 2 * M + 3 * S + 4 * MS + 5 * US + 6), ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
    ("52763797000ns", 52763797000), ("0.3333333333333333333h", 20 * M), ("9007199254740993ns", (1 << 53) + 1),
    ("9223372036854775807ns", (1 << 63) - 1), ("9223372036854775.807us", (1 << 63) - 1),
    ("9223372036s854ms775us807ns", (1 << 63) - 1), ("-9223372036854775808ns", -(1 << 63)),
    ("-9223372036854775.808us", -(1 << 63)), ("-9223372036s854ms775us808ns", -(1 << 63)),
    ("-2562047h47m16.854775808s", -(1 << 63)), ("0.100000000000000000000h", 6 * M),
    ("0.830103483285477580700h", 49 * M + 48 * S + 372539827),
]  # fmt: skip
# Go's parseDurationErrorTests, plus spaces (Go has no trimming) and values that are not strings.
GO_REFUSES = [
    "", "3", "-", "s", ".", "-.", ".s", "+.s", "1d", "\ufffd", "\ufffd hello \ufffd world",
    "9223372036854775810ns", "9223372036854775808ns", "-9223372036854775809ns", "9223372036854776us",
    "3000000h", "9223372036854775.808us", "9223372036854ms775us808ns",
    " 5s", "5s ", "5 s", "1h 30m", "\t5s", "5s\n", "５s", 5, 1.5, None,
]  # fmt: skip


@pytest.mark.parametrize(("text", "nanoseconds"), GO_ACCEPTS)
def test_what_go_accepts(text, nanoseconds):
    assert parse_duration(text) == Duration(text, nanoseconds)


@pytest.mark.parametrize("value", GO_REFUSES)
def test_what_go_refuses(value):
    with pytest.raises(DurationError):
        parse_duration(value)


def problems(yaml_text: str) -> list[str]:
    with pytest.raises(SpecError) as e:
        load_config(yaml_text, "r.yaml")
    return [str(p) for p in e.value.problems]


SYNTAX = "must be a Go duration such as '500ms', '30s' or '1h30m' (units ns, us, ms, s, m, h; no spaces)"
OVERFLOW = "is longer than Go's (and so containerd's) largest duration, 2562047h47m16.854775807s (int64 nanoseconds)"


def test_every_duration_field_refused_with_field_and_value():
    y = (
        "version: 1\n"
        "registries:\n"
        "  docker.io:\n"
        "    mirrors:\n"
        "      - {url: a.example, dialTimeout: 3000000h}\n"
        "      - {url: b.example, dialTimeout: ' 5s'}\n"
        "      - {url: c.example, dialTimeout: -5s}\n"
        "      - {url: d.example, dialTimeout: 5}\n"
        "restart:\n"
        "  spread: 1d\n"
        "  healthTimeout: 2562047h47m16.854775808s\n"
    )
    assert problems(y) == [
        f"5: registries.\"docker.io\".mirrors[0].dialTimeout: {OVERFLOW}: '3000000h'",
        f"6: registries.\"docker.io\".mirrors[1].dialTimeout: {SYNTAX}: ' 5s'",
        "7: registries.\"docker.io\".mirrors[2].dialTimeout: must not be negative (it is a timeout or a delay): '-5s'",
        f'8: registries."docker.io".mirrors[3].dialTimeout: {SYNTAX}: 5',
        "10: restart.spread: unknown unit 'd': Go durations use ns, us, ms, s, m or h: '1d'",
        f"11: restart.healthTimeout: {OVERFLOW}: '2562047h47m16.854775808s'",
    ]


def test_parsed_once_and_rendered_as_written():
    y = "version: 1\nregistries:\n  docker.io:\n    mirrors: [{url: m.example, dialTimeout: 1m30.5s}]\nrestart: {spread: 1h30m}\n"
    config = load_config(y)
    assert config.registries["docker.io"].mirrors[0].dialTimeout == Duration("1m30.5s", 90_500_000_000)
    assert config.restart.spread.seconds == 5400.0
    assert config.restart.healthTimeout == Duration("60s", 60 * S)
    files, _ = hosts(y, "2.1.0")
    assert tomllib.loads(text(files, "docker.io/hosts.toml"))["host"]["https://m.example"]["dial_timeout"] == "1m30.5s"
