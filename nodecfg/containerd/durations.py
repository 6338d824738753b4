"""Go duration strings ("500ms", "1h30m"), parsed exactly as Go's `time.ParseDuration` parses them.

containerd reads `dial_timeout` with `time.ParseDuration` into an int64 of nanoseconds, so a value
is accepted here only when Go accepts it and it fits: `" 5s"` (a space) and `3000000h` (overflow)
are refused instead of rendered into a hosts.toml that containerd then ignores.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_NANOSECONDS = (1 << 63) - 1  # Go's time.Duration is an int64 of nanoseconds
_NEG_LIMIT = 1 << 63  # the magnitude of the most negative duration
# Go's unitMap (time/format.go), both micro signs included: U+00B5 and U+03BC.
_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_NUMBER = re.compile(r"([0-9]*)(?:\.([0-9]*))?")
_UNIT = re.compile(r"[^0-9.]*")
SYNTAX = "must be a Go duration such as '500ms', '30s' or '1h30m' (units ns, us, ms, s, m, h; no spaces)"
OVERFLOW = "is longer than Go's (and so containerd's) largest duration, 2562047h47m16.854775807s (int64 nanoseconds)"


class DurationError(ValueError):
    """Not a duration Go would accept (the message is the rule, without the value)."""


@dataclass(frozen=True)
class Duration:
    """A parsed duration: the text as written (what containerd reads) and its nanoseconds."""

    text: str
    nanoseconds: int

    @property
    def seconds(self) -> float:
        """The duration in seconds, for Python's clocks and timeouts."""
        return self.nanoseconds / 1e9

    def __str__(self) -> str:
        return self.text


def _fraction(digits: str) -> tuple[int, float]:
    """Go's leadingFraction: the digits as an integer and its scale, precision dropped on overflow."""
    x, scale = 0, 1.0
    for c in digits:
        y = x * 10 + int(c)
        if x > MAX_NANOSECONDS // 10 or y > _NEG_LIMIT:
            break
        x, scale = y, scale * 10
    return x, scale


def _component(s: str) -> tuple[int, str]:
    """One `<number><unit>` from the front of `s`: its nanoseconds and the rest of `s`."""
    m = _NUMBER.match(s)
    assert m is not None  # the pattern matches the empty string
    whole, frac = m.group(1), m.group(2) or ""
    if not whole and not frac:  # no digits at all, e.g. ".s", "s" or " 5s"
        raise DurationError(SYNTAX)
    rest = s[m.end() :]
    unit = _UNIT.match(rest)
    assert unit is not None
    name, rest = unit.group(0), rest[unit.end() :]
    if name not in _UNITS:
        raise DurationError(
            SYNTAX if name == "" or name.strip() != name else f"unknown unit {name!r}: Go durations use ns, us, ms, s, m or h"
        )
    scale = _UNITS[name]
    v = int(whole) if whole else 0
    if v > _NEG_LIMIT // scale:
        raise DurationError(OVERFLOW)
    v *= scale
    f, f_scale = _fraction(frac)
    if f > 0:
        # float64, as Go computes it, so a fraction rounds to the same nanosecond containerd gets.
        v += int(float(f) * (float(scale) / f_scale))
        if v > _NEG_LIMIT:
            raise DurationError(OVERFLOW)
    return v, rest


def parse_duration(text: object) -> Duration:
    """Parse a Go `time.ParseDuration` string; raise DurationError where Go returns an error.

    Go's grammar: an optional sign, then one or more `<decimal><unit>` (`1.5h`, `1h30m`), or `0`.
    The sign is accepted here; callers that need a timeout refuse a negative one.
    """
    if not isinstance(text, str):
        raise DurationError(SYNTAX)
    s, negative = text, False
    if s[:1] in ("-", "+"):
        negative, s = s[0] == "-", s[1:]
    if s == "0":
        return Duration(text, 0)
    if not s:
        raise DurationError(SYNTAX)
    total = 0
    while s:
        v, s = _component(s)
        total += v
        if total > _NEG_LIMIT:
            raise DurationError(OVERFLOW)
    if negative:
        return Duration(text, -total)
    if total > MAX_NANOSECONDS:
        raise DurationError(OVERFLOW)
    return Duration(text, total)
