"""The apply journal, `<state dir>/journal.json`: enough on disk to undo or finish an apply killed at any point.

One file, two phases, each written atomically over the one before:

- `Staging`, before the first directory or temp file is created: every temp file and directory
  the staging may create. A kill while staging is undone from it (temps and directories go), so
  the node is as it was and no directory nodecfg made is forgotten.
- `Commit`, once every new file is staged (the commit point): the renames, deletes, directories
  and the state to save. A kill after it is finished from it.

Only holders of the node lock read or write it.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any

from nodecfg.node.fs import NodeError, atomic_write, read_file
from nodecfg.node.state import State

JOURNAL = "journal.json"


@dataclass(frozen=True)
class Staging:
    """What staging is about to create."""

    temps: tuple[str, ...]  # real paths of the temp files, one beside each file to be written
    dirs: tuple[str, ...]  # host paths of the directories missing now, parents first

    def to_json(self) -> dict[str, Any]:
        """Plain data for the journal."""
        return {"phase": "staging", "temps": list(self.temps), "dirs": list(self.dirs)}


@dataclass(frozen=True)
class Commit:
    """Everything staged; what is left to do."""

    renames: tuple[tuple[str, str], ...]  # (temp, target), real paths, in plan order
    deletes: tuple[str, ...]  # real paths of stale files
    dirs: tuple[str, ...]  # host paths of every directory nodecfg created (removed once empty)
    state: State  # state.json once done

    def to_json(self) -> dict[str, Any]:
        """Plain data for the journal."""
        return {
            "phase": "commit",
            "renames": [list(r) for r in self.renames],
            "deletes": list(self.deletes),
            "dirs": list(self.dirs),
            "state": self.state.to_json(),
        }


def _from_json(data: dict[str, Any]) -> Staging | Commit:
    if data.get("phase") == "staging":
        return Staging(tuple(data["temps"]), tuple(data["dirs"]))
    # No phase: a journal of an earlier release, which wrote only the commit.
    return Commit(
        tuple((str(tmp), str(real)) for tmp, real in data["renames"]),
        tuple(data["deletes"]),
        tuple(data["dirs"]),
        State.from_json(data["state"]),
    )


def read_journal(real_state_dir: str) -> Staging | Commit | None:
    """The journal of an apply that did not finish, or None."""
    info = read_file(os.path.join(real_state_dir, JOURNAL))
    if info.content is None:
        return None
    try:
        return _from_json(json.loads(info.content))
    except (ValueError, KeyError, TypeError):
        # Written atomically, so this is not a torn write: refuse to guess.
        raise NodeError(f"read {real_state_dir}/{JOURNAL}: not a journal nodecfg wrote; inspect it and remove it") from None


def write_journal(real_state_dir: str, entry: Staging | Commit) -> None:
    """Replace the journal (temp file, fsync, rename)."""
    atomic_write(os.path.join(real_state_dir, JOURNAL), json.dumps(entry.to_json()).encode(), 0o600)


def remove_journal(real_state_dir: str) -> None:
    """The apply is done (or undone)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(real_state_dir, JOURNAL))
