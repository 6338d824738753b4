"""The daemon's `status.json`: what its last step found, for `nodecfg status`, `doctor` and `explain`.

The daemon writes it after every step; the readers sit beside or above node/ (doctor here, the
cli), so the one type all of them share lives here. The keys on disk are camelCase, as
docs/daemon.md shows them; `to_json` and `from_json` round-trip them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from nodecfg.node.fs import read_file
from nodecfg.node.reach import Stage

STATUS_FILE = "status.json"  # the daemon's last reconcile, read by `nodecfg status`
_SCALARS: dict[str, type] = {"str": str, "bool": bool, "int": int, "float": float}
Convert = Callable[[Any], Any]


def _camel(name: str) -> str:
    """`fails_in_a_row` -> `failsInARow`: the key a field has in status.json."""
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)


def _to_json(obj: Any, special: dict[str, Convert] | None = None) -> dict[str, Any]:
    """A dataclass as plain data under camelCase keys, in field order; `special` converts the non-scalar fields."""
    conv = special or {}
    return {_camel(f.name): conv.get(f.name, lambda v: v)(getattr(obj, f.name)) for f in fields(obj)}


def _from_json(cls: Any, data: dict[str, Any], special: dict[str, Convert] | None = None) -> dict[str, Any]:
    """The keyword arguments that rebuild `cls` from `_to_json`'s data: a missing scalar takes its default.

    Booleans are made booleans; `special` reads the other fields from their raw value (None when missing).
    """
    conv, out = special or {}, {}
    for f in fields(cls):
        raw = data.get(_camel(f.name))
        if f.name in conv:
            out[f.name] = conv[f.name](raw)
            continue
        kind = _SCALARS.get(str(f.type))  # None: a type this helper does not know (e.g. `X | None`)
        fallback = f.default if f.default is not MISSING else (kind() if kind is not None else None)
        value = raw if _camel(f.name) in data else fallback
        out[f.name] = bool(value) if kind is bool else value
    return out


@dataclass(frozen=True)
class BadInput:
    """An input containerd was unhealthy with: rolled back, not retried until the input changes."""

    time: str  # when it was rolled back (UTC, ISO 8601)
    reason: str  # containerd's health then, one line

    def to_json(self) -> dict[str, Any]:
        """Plain data for bad-inputs.json and `badInputs` in status.json."""
        return {"time": self.time, "reason": self.reason}

    @classmethod
    def from_json(cls, data: Any) -> BadInput:
        """Inverse of to_json; a missing field reads as '?'."""
        d = data if isinstance(data, dict) else {}
        return cls(str(d.get("time", "?")), str(d.get("reason", "?")))


def bad_inputs_from_json(data: Any) -> dict[str, BadInput]:
    """`{input hash: BadInput}` from plain data; anything but an object reads as none."""
    if not isinstance(data, dict):
        return {}
    return {str(k): BadInput.from_json(v) for k, v in data.items()}


def bad_inputs_to_json(bad: dict[str, BadInput]) -> dict[str, Any]:
    """Inverse of bad_inputs_from_json."""
    return {k: v.to_json() for k, v in bad.items()}


@dataclass(frozen=True)
class MirrorStatus:
    """One mirror endpoint the daemon probes, as it last saw it."""

    registry: str
    url: str
    in_rotation: bool = True
    since: float = 0.0  # when it last went out or came back (Unix time)
    reason: str = ""
    last_probe: str = ""
    fails_in_a_row: int = 0
    in_hosts_toml: bool = False  # False: the render left it out (out of rotation, with somewhere else to pull from)
    last_outcome: Stage | None = None  # where the last probe stopped (NO_ANSWER: connected, no response headers); None before one

    def to_json(self) -> dict[str, Any]:
        """Plain data for `mirrors` in status.json (`lastOutcome` is the Stage's value, "" before a probe)."""
        return _to_json(self, {"last_outcome": lambda s: s.value if s is not None else ""})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MirrorStatus:
        """Inverse of to_json; missing fields take their defaults, an outcome this reader does not know reads as None."""
        return cls(**_from_json(cls, data, {"last_outcome": _stage}))

    def note(self) -> str:
        """'mirror X (registry Y) out of rotation since T, ...: reason' for a sick mirror, else ''."""
        if self.in_rotation:
            return ""
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(self.since or 0)))
        where = "left out of hosts.toml" if not self.in_hosts_toml else "kept in hosts.toml (nowhere else to pull from)"
        return f"mirror {self.url} ({self.registry}) out of rotation since {since}, {where}: {self.reason}"


@dataclass(frozen=True)
class DaemonStatus:
    """Contents of `<state dir>/status.json`."""

    node: str
    pid: int
    ready: bool
    reason: str
    restart_pending: bool = False
    restart_policy: str = ""
    restart_method: str = ""
    bad_inputs: dict[str, BadInput] = field(default_factory=dict)
    mirrors: tuple[MirrorStatus, ...] = ()
    last: dict[str, Any] = field(default_factory=dict)  # the last reconcile's log event
    updated: float = 0  # Unix time (0 when unknown, written as 0 as before)

    def to_json(self) -> dict[str, Any]:
        """Plain data for status.json."""
        return _to_json(self, {"bad_inputs": bad_inputs_to_json, "mirrors": lambda ms: [m.to_json() for m in ms]})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DaemonStatus:
        """Inverse of to_json; missing fields take their defaults, malformed mirrors are left out."""
        return cls(**_from_json(cls, data, {"bad_inputs": bad_inputs_from_json, "mirrors": _mirrors, "last": _object}))

    def to_bytes(self) -> bytes:
        """status.json content (sorted keys, as the daemon has always written it)."""
        return (json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n").encode()


def _stage(data: Any) -> Stage | None:
    return next((s for s in Stage if s.value == data), None)


def _mirrors(data: Any) -> tuple[MirrorStatus, ...]:
    return tuple(MirrorStatus.from_json(m) for m in data if isinstance(m, dict)) if isinstance(data, list) else ()


def _object(data: Any) -> dict[str, Any]:
    return data if isinstance(data, dict) else {}


def read_status_object(real_state_dir: str) -> dict[str, Any] | None:
    """status.json as it is on disk (for `status -o json`: every key, none made up), or None when there is none.

    ValueError when it is not a JSON object.
    """
    info = read_file(os.path.join(real_state_dir, STATUS_FILE))
    if info.content is None:
        return None
    data = json.loads(info.content)
    if not isinstance(data, dict):
        raise ValueError(f"{STATUS_FILE} is not a JSON object")
    return data


def read_status(real_state_dir: str) -> DaemonStatus | None:
    """The daemon's status.json, typed, or None when there is none; ValueError when it is not a JSON object."""
    data = read_status_object(real_state_dir)
    return None if data is None else DaemonStatus.from_json(data)


def daemon_mirrors(real_state_dir: str) -> list[MirrorStatus]:
    """The daemon's live view of the mirrors it probes (`mirrors` in status.json), or none."""
    try:
        status = read_status(real_state_dir)
    except ValueError:
        return []
    return list(status.mirrors) if status is not None else []
