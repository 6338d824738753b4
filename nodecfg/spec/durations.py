"""Go-style duration strings ("500ms", "1m30s"), the form containerd and Kubernetes users write."""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"([0-9]*\.?[0-9]+|[0-9]+\.)(ns|us|\u00b5s|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Parse a Go `time.ParseDuration` string into seconds; raise ValueError when containerd would.

    Only non-negative durations are accepted: every duration in the input is a timeout or a delay.
    """
    if not isinstance(text, str):
        raise ValueError("must be a duration string such as '500ms', '30s' or '5m'")
    s = text.strip()
    if s == "0":
        return 0.0
    if not s:
        raise ValueError("must be a duration string such as '500ms', '30s' or '5m'")
    pos, total = 0, 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise ValueError("must be a duration string such as '500ms', '30s' or '5m'")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return total
