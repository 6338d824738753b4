"""Apply a plan to the node: journaled, atomic, crash-safe, and never losing a file it did not write.

Steps: keep originals of foreign files -> stage every new file as a temp file beside its target
(fsynced) -> write the journal (the commit point) -> rename in plan order, delete stale files ->
save state -> remove the journal. A crash before the journal leaves only temp files (removed by
`recover`); a crash after it is finished by `recover`, which replays the journal.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from dataclasses import dataclass
from typing import Any

from nodecfg.node.fs import TMP_SUFFIX, NodeError, atomic_write, fsync_dir, host_path, make_dirs, read_file, write_temp
from nodecfg.node.state import Original, State, backup_name, save_state, state_bytes
from nodecfg.plan import Action, Plan, sha256
from nodecfg.render.files import FileKind
from nodecfg.render.legacy import Legacy

JOURNAL = "journal.json"


ETC_HOSTS = "/etc/hosts"  # host path of the file `hostAliases` edits


@dataclass(frozen=True)
class NodePaths:
    """Where things are: `root` is where the host's / is mounted; the rest are host paths."""

    root: str = "/"
    containerd_config: str = "/etc/containerd/config.toml"
    hosts_dir: str = "/etc/containerd/certs.d"
    state_dir: str = "/var/lib/nodecfg"
    containerd_socket: str = "/run/containerd/containerd.sock"

    def real(self, host: str) -> str:
        """The path this process opens for host path `host`."""
        return host_path(self.root, host)

    def host(self, real: str) -> str:
        """Inverse of `real` for a path under the root."""
        root = os.path.abspath(self.root)
        return real if root == "/" else "/" + os.path.relpath(real, root)


def _keep_original(paths: NodePaths, state: State, host: str) -> State:
    if host in state.originals:
        return state  # the first original is the one uninstall restores
    real_state = paths.real(paths.state_dir)
    info = read_file(paths.real(host))
    if info.content is None:
        return state.with_changes(originals={**state.originals, host: Original(None, None)})
    name = backup_name(host)
    os.makedirs(os.path.join(real_state, "originals"), mode=0o700, exist_ok=True)
    atomic_write(os.path.join(real_state, "originals", name), info.content, 0o600)
    return state.with_changes(originals={**state.originals, host: Original(name, info.mode)})


def apply_plan(
    plan: Plan, paths: NodePaths, state: State, *, auth_hosts: frozenset[str], legacy: Legacy, containerd: str = ""
) -> State:
    """Carry out `plan`; return the state saved afterwards."""
    real_state = paths.real(paths.state_dir)
    os.makedirs(real_state, mode=0o700, exist_ok=True)
    for op in plan.operations:
        if op.keep_original or (op.action is Action.DELETE and op.path not in state.owned):
            state = _keep_original(paths, state, op.path)
    created: list[str] = []
    renames: list[tuple[str, str]] = []
    try:
        for op in plan.operations:
            if op.action is Action.WRITE:
                assert op.content is not None and op.mode is not None
                real = paths.real(op.path)
                make_dirs(os.path.dirname(real), created)
                renames.append((write_temp(real, op.content, op.mode), real))
    except NodeError:
        for tmp, _ in renames:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    deletes = [paths.real(op.path) for op in plan.operations if op.action is Action.DELETE]
    dirs = set(state.dirs) | {paths.host(d) for d in created}
    edited = dict(state.edited)
    for op in plan.operations:
        if op.kind is FileKind.CONTAINERD_CONFIG and op.path not in plan.owned:
            if op.action is Action.WRITE and op.content is not None:
                edited[op.path] = sha256(op.content)
            else:
                edited.pop(op.path, None)
    new_state = state.with_changes(
        edited=edited,
        owned=dict(plan.owned),
        dirs=tuple(sorted(dirs)),
        auth_hosts=auth_hosts,
        legacy=legacy,
        containerd=containerd or state.containerd,
    )
    journal = {"renames": renames, "deletes": deletes, "dirs": sorted(dirs), "state": new_state.to_json()}
    atomic_write(os.path.join(real_state, JOURNAL), json.dumps(journal).encode(), 0o600)
    _finish(paths, journal)
    return new_state


def _write_in_place(tmp: str, real: str) -> None:
    """Overwrite a file that is a mount point (rename gives EBUSY), then fsync.

    /etc/hosts is one when bind-mounted into a container or by systemd's ReadWritePaths. Not atomic:
    a reader may see a short file for an instant; the content is small and written in one go.
    """
    with open(tmp, "rb") as f:
        data = f.read()
    try:
        fd = os.open(real, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise NodeError(f"write {real} (a mount point, written in place): {e.strerror}") from None
    os.unlink(tmp)


def _finish(paths: NodePaths, journal: dict[str, Any]) -> None:
    for tmp, real in journal["renames"]:
        if os.path.exists(tmp):
            try:
                os.replace(tmp, real)
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise NodeError(f"write {real}: {e.strerror}") from None
                _write_in_place(tmp, real)
            fsync_dir(os.path.dirname(real))
    for real in journal["deletes"]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(real)
            fsync_dir(os.path.dirname(real))
    # Directories nodecfg created and that are now empty go too (deepest first).
    keep = []
    for d in sorted(journal["dirs"], key=len, reverse=True):
        try:
            os.rmdir(paths.real(d))
        except OSError:
            keep.append(d)
    state_json = dict(journal["state"])
    state_json["dirs"] = sorted(keep)
    save_state(paths.real(paths.state_dir), State.from_json(state_json))
    os.unlink(os.path.join(paths.real(paths.state_dir), JOURNAL))


def recover(paths: NodePaths, scan_dirs: list[str]) -> str | None:
    """Finish an apply that a crash interrupted, or clean up its temp files. Returns what it did."""
    real_state = paths.real(paths.state_dir)
    info = read_file(os.path.join(real_state, JOURNAL))
    if info.content is not None:
        try:
            journal = json.loads(info.content)
        except json.JSONDecodeError:
            # The journal is written atomically, so this is not a torn write: refuse to guess.
            raise NodeError(f"read {real_state}/{JOURNAL}: not valid JSON; inspect it and remove it") from None
        _finish(paths, journal)
        return "finished an interrupted apply from its journal"
    removed = 0
    for d in scan_dirs:
        real = paths.real(d)
        for dirpath, _dirnames, filenames in os.walk(real):
            for name in filenames:
                if name.endswith(TMP_SUFFIX):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(dirpath, name))
                        removed += 1
            if dirpath.count(os.sep) - real.count(os.sep) >= 1:
                _dirnames.clear()
    return f"removed {removed} temp file(s) of an interrupted apply" if removed else None


__all__ = ["NodePaths", "apply_plan", "recover", "state_bytes"]
