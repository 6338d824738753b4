"""The daemon's own files in the state dir: the pending restart, the good config.toml, the bad inputs, the status.

Each is on disk before the step it protects is taken (docs/daemon.md, "Crash safety"), so the next
start can finish or undo that step. This module is the only code that reads or writes them. A
missing file is the empty case; a corrupt one is logged and read as missing, except the pending
restart (see read_pending), which is finished rather than forgotten.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from nodecfg.node.fs import atomic_write, read_file
from nodecfg.node.status import STATUS_FILE, BadInput, DaemonStatus, bad_inputs_from_json, bad_inputs_to_json

log = structlog.get_logger("nodecfg")

PENDING_FILE = "pending-restart.json"
GOOD_CONFIG_FILE = "good-config.toml"
BAD_INPUTS_FILE = "bad-inputs.json"


@dataclass
class Pending:
    """A config.toml written but not yet loaded by containerd; persisted in PENDING_FILE."""

    input_hash: str
    good_exists: bool  # False: there was no config.toml before (rollback removes it)
    # The containerd that was running when the file was last written (pid, start time), or None
    # when it cannot be seen (no hostPID). Another containerd serving the socket now has loaded it.
    # Compared as an identity, not against the clock: process start times are coarse.
    containerd: tuple[int, float] | None = None
    due: float = 0.0  # monotonic; 0 = not scheduled (policy never / method none). Not persisted.
    first_due: float = 0.0  # not persisted either: a new start schedules afresh
    since: float = field(default_factory=time.time)  # the burst's first cold write (Unix time)

    def to_json(self) -> dict[str, Any]:
        """Plain data for PENDING_FILE (the persisted fields only)."""
        return {"inputHash": self.input_hash, "goodExists": self.good_exists, "containerd": self.containerd, "since": self.since}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pending:
        """Inverse of to_json; KeyError, TypeError or ValueError when a field is missing or malformed."""
        running = data.get("containerd")
        return cls(
            str(data["inputHash"]),
            bool(data["goodExists"]),
            (int(running[0]), float(running[1])) if running else None,
            since=float(data.get("since") or time.time()),
        )


class StateFiles:
    """The daemon's files in one state dir (a real path, as this process opens it)."""

    def __init__(self, state_real: str) -> None:
        self.dir = state_real

    def path(self, name: str) -> str:
        """Where `name` is, as this process opens it."""
        return os.path.join(self.dir, name)

    def _write(self, name: str, content: bytes) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        atomic_write(self.path(name), content, 0o600)

    def _write_json(self, name: str, data: Any) -> None:
        self._write(name, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())

    def _read_json(self, name: str) -> Any:
        info = read_file(self.path(name))
        if info.content is None:
            return None
        try:
            return json.loads(info.content)
        except ValueError:
            log.warning("state", problem=f"{name} is not JSON; ignored")
            return None

    def read_pending(self) -> Pending | None:
        """The restart a previous daemon left unfinished, if any.

        A file that is there but cannot be read (not JSON, a field missing or wrong: edited by hand
        or damaged) still says a config.toml may not be loaded yet. It is read as a restart pending
        for an unknown input with an unknown containerd, so the restart, its health check and, if
        need be, the rollback to good-config.toml still happen; ignoring it would leave the node
        not ready with nothing scheduled, and the next cold change would keep an unverified file
        as the good one.
        """
        info = read_file(self.path(PENDING_FILE))
        if info.content is None:
            return None
        try:
            return Pending.from_json(json.loads(info.content))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            log.error("state", problem=f"{PENDING_FILE} is damaged: finishing the restart it stands for")
            return Pending("", os.path.exists(self.path(GOOD_CONFIG_FILE)), None)

    def write_pending(self, pending: Pending) -> None:
        """Record the pending restart (before the step it protects)."""
        self._write_json(PENDING_FILE, pending.to_json())

    def clear_pending(self) -> None:
        """The restart is over (done or rolled back): the pending file and the good config go."""
        for name in (PENDING_FILE, GOOD_CONFIG_FILE):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(name))

    def write_good(self, content: bytes) -> None:
        """Keep the config.toml containerd runs with, to return to on a rollback.

        The state dir is not created here: the node lock the step holds lives in it.
        """
        atomic_write(self.path(GOOD_CONFIG_FILE), content, 0o600)

    def read_good(self) -> bytes | None:
        """The kept config.toml, or None."""
        return read_file(self.path(GOOD_CONFIG_FILE)).content

    def read_bad(self) -> dict[str, BadInput]:
        """The inputs rolled back so far, by input hash."""
        return bad_inputs_from_json(self._read_json(BAD_INPUTS_FILE))

    def write_bad(self, bad: dict[str, BadInput]) -> None:
        """Record the rolled-back inputs (before the rollback: a crash must not retry them)."""
        self._write_json(BAD_INPUTS_FILE, bad_inputs_to_json(bad))

    def write_status(self, status: DaemonStatus) -> None:
        """status.json, for `nodecfg status`, doctor and explain."""
        self._write(STATUS_FILE, status.to_bytes())
