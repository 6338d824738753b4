"""nodecfg's own record on the node: what it owns, the originals it kept, the legacy it moved."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from nodecfg.containerd.legacy import Legacy
from nodecfg.node.fs import NodeError, atomic_write, read_file

STATE_VERSION = 1
STATE_FILE = "state.json"


@dataclass(frozen=True)
class Original:
    """A file as it was before nodecfg first changed it (backup None: it did not exist)."""

    backup: str | None
    mode: int | None


@dataclass(frozen=True)
class State:
    """Contents of `<state dir>/state.json` (host paths throughout)."""

    owned: dict[str, str] = field(default_factory=dict)
    dirs: tuple[str, ...] = ()
    auth_hosts: frozenset[str] = frozenset()
    legacy: Legacy = field(default_factory=Legacy)
    originals: dict[str, Original] = field(default_factory=dict)
    # Files nodecfg edits but does not own (config.toml): sha256 of what it last wrote there, so
    # uninstall can tell whether anyone changed the file since.
    edited: dict[str, str] = field(default_factory=dict)
    # The containerd release the last apply rendered for: the version of last resort when neither
    # the running containerd nor a binary answers (`explain` on a copy of a node's files).
    containerd: str = ""

    def to_json(self) -> dict[str, Any]:
        """Plain data for state.json."""
        return {
            "version": STATE_VERSION,
            "owned": dict(sorted(self.owned.items())),
            "dirs": sorted(self.dirs),
            "authHosts": sorted(self.auth_hosts),
            "legacy": self.legacy.to_json(),
            "originals": {p: {"backup": o.backup, "mode": o.mode} for p, o in sorted(self.originals.items())},
            "edited": dict(sorted(self.edited.items())),
            "containerd": self.containerd,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        """Inverse of to_json."""
        return cls(
            owned={str(k): str(v) for k, v in data.get("owned", {}).items()},
            dirs=tuple(data.get("dirs", ())),
            auth_hosts=frozenset(data.get("authHosts", ())),
            legacy=Legacy.from_json(data.get("legacy") or {}),
            originals={str(p): Original(o.get("backup"), o.get("mode")) for p, o in data.get("originals", {}).items()},
            edited={str(k): str(v) for k, v in data.get("edited", {}).items()},
            containerd=str(data.get("containerd") or ""),
        )

    def with_changes(self, **kw: Any) -> State:
        """A copy with some fields replaced."""
        return replace(self, **kw)


def backup_name(host_path: str) -> str:
    """File name under originals/ for a host path."""
    return quote(host_path, safe="")


def load_state(real_state_dir: str) -> State:
    """Read state.json; an absent file is an empty state."""
    info = read_file(os.path.join(real_state_dir, STATE_FILE))
    if info.content is None:
        return State()
    try:
        data = json.loads(info.content)
    except json.JSONDecodeError as e:
        raise NodeError(f"read {real_state_dir}/state.json: not valid JSON ({e}); move it away to start over") from None
    where = f"read {real_state_dir}/state.json"
    if not isinstance(data, dict):
        raise NodeError(f"{where}: a JSON {type(data).__name__}, not nodecfg's state (an object); move it away to start over")
    if data.get("version") != STATE_VERSION:
        raise NodeError(f"{where}: unknown state version {data.get('version')!r}")
    try:
        return State.from_json(data)
    except (TypeError, ValueError, AttributeError) as e:
        raise NodeError(f"{where}: damaged ({type(e).__name__} in its fields); move it away to start over") from None


def save_state(real_state_dir: str, state: State) -> None:
    """Write state.json atomically (0600: it names credential hosts, never credentials)."""
    os.makedirs(real_state_dir, mode=0o700, exist_ok=True)
    atomic_write(os.path.join(real_state_dir, STATE_FILE), state_bytes(state), 0o600)


def state_bytes(state: State) -> bytes:
    """state.json content."""
    return (json.dumps(state.to_json(), indent=2, sort_keys=False) + "\n").encode()
