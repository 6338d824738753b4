"""The daemon's `status.json`: what its last step found, for `nodecfg status`, `doctor` and `explain`.

The daemon writes it after every step; the readers sit beside or above node/ (doctor here, the
cli), so the one type all of them share lives here. The keys on disk are camelCase, as
docs/daemon.md shows them; `to_json` and `from_json` round-trip them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from nodecfg.node.fs import read_file

STATUS_FILE = "status.json"  # the daemon's last reconcile, read by `nodecfg status`


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

    def to_json(self) -> dict[str, Any]:
        """Plain data for `mirrors` in status.json."""
        return {
            "registry": self.registry,
            "url": self.url,
            "inRotation": self.in_rotation,
            "since": self.since,
            "reason": self.reason,
            "lastProbe": self.last_probe,
            "failsInARow": self.fails_in_a_row,
            "inHostsToml": self.in_hosts_toml,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MirrorStatus:
        """Inverse of to_json; missing fields take their defaults."""
        return cls(
            registry=str(data.get("registry", "")),
            url=str(data.get("url", "")),
            in_rotation=bool(data.get("inRotation", True)),
            since=data.get("since", 0.0),
            reason=data.get("reason", ""),
            last_probe=data.get("lastProbe", ""),
            fails_in_a_row=data.get("failsInARow", 0),
            in_hosts_toml=bool(data.get("inHostsToml", False)),
        )

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
    updated: float = 0.0  # Unix time

    def to_json(self) -> dict[str, Any]:
        """Plain data for status.json."""
        return {
            "node": self.node,
            "pid": self.pid,
            "ready": self.ready,
            "reason": self.reason,
            "restartPending": self.restart_pending,
            "restartPolicy": self.restart_policy,
            "restartMethod": self.restart_method,
            "badInputs": bad_inputs_to_json(self.bad_inputs),
            "mirrors": [m.to_json() for m in self.mirrors],
            "last": self.last,
            "updated": self.updated,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DaemonStatus:
        """Inverse of to_json; missing fields take their defaults, malformed mirrors are left out."""
        mirrors = data.get("mirrors")
        last = data.get("last")
        return cls(
            node=data.get("node", ""),
            pid=data.get("pid", 0),
            ready=bool(data.get("ready", False)),
            reason=data.get("reason", ""),
            restart_pending=bool(data.get("restartPending", False)),
            restart_policy=data.get("restartPolicy", ""),
            restart_method=data.get("restartMethod", ""),
            bad_inputs=bad_inputs_from_json(data.get("badInputs")),
            mirrors=tuple(MirrorStatus.from_json(m) for m in mirrors if isinstance(m, dict)) if isinstance(mirrors, list) else (),
            last=last if isinstance(last, dict) else {},
            updated=data.get("updated", 0),
        )

    def to_bytes(self) -> bytes:
        """status.json content (sorted keys, as the daemon has always written it)."""
        return (json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n").encode()


def read_status(real_state_dir: str) -> DaemonStatus | None:
    """The daemon's status.json, or None when there is none; ValueError when it is not a JSON object."""
    info = read_file(os.path.join(real_state_dir, STATUS_FILE))
    if info.content is None:
        return None
    data = json.loads(info.content)
    if not isinstance(data, dict):
        raise ValueError(f"{STATUS_FILE} is not a JSON object")
    return DaemonStatus.from_json(data)


def daemon_mirrors(real_state_dir: str) -> list[MirrorStatus]:
    """The daemon's live view of the mirrors it probes (`mirrors` in status.json), or none."""
    try:
        status = read_status(real_state_dir)
    except ValueError:
        return []
    return list(status.mirrors) if status is not None else []
