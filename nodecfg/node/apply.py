"""Apply a plan to the node: journaled, atomic, crash-safe, and never losing a file it did not write.

Steps: keep originals of foreign files -> journal what staging will create (`Staging`) -> stage
every new file as a temp file beside its target (fsynced), creating missing directories -> journal
the commit (`Commit`, the commit point) -> rename in plan order, delete stale files, remove
directories left empty -> save state -> remove the journal. `recover` undoes a kill before the
commit point from the staging entry and finishes one after it from the commit entry, so a kill at
any point leaves a node that the next run and `uninstall` restore exactly. The caller holds the
node lock (`nodecfg.node.lock`).
"""

from __future__ import annotations

import contextlib
import errno
import os

from nodecfg.containerd.legacy import Legacy
from nodecfg.node.fs import (
    TMP_SUFFIX,
    NodeError,
    atomic_write,
    fsync_dir,
    make_dirs,
    missing_dirs,
    read_file,
    temp_path,
    write_temp,
)
from nodecfg.node.journal import Commit, Staging, read_journal, remove_journal, write_journal
from nodecfg.node.paths import NodePaths
from nodecfg.node.state import Original, State, backup_name, save_state, state_bytes
from nodecfg.plan import Action, Operation, Plan, sha256
from nodecfg.render.files import FileKind


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


def _keep_originals(plan: Plan, paths: NodePaths, state: State) -> State:
    for op in plan.operations:
        if op.keep_original or (op.action is Action.DELETE and op.path not in state.owned):
            state = _keep_original(paths, state, op.path)
    return state


def _staging(paths: NodePaths, writes: list[tuple[str, Operation]]) -> Staging:
    """The temp files and directories staging `writes` will create, worked out before any exists."""
    dirs: dict[str, None] = {}  # an ordered set: parents before their children
    for real, _op in writes:
        dirs.update(dict.fromkeys(missing_dirs(os.path.dirname(real))))
    return Staging(tuple(temp_path(real) for real, _op in writes), tuple(paths.host(d) for d in dirs))


def _stage(writes: list[tuple[str, Operation]], created: list[str]) -> list[tuple[str, str]]:
    renames = []
    for real, op in writes:
        assert op.content is not None and op.mode is not None
        make_dirs(os.path.dirname(real), created)
        renames.append((write_temp(real, op.content, op.mode), real))
    return renames


def undo_staging(paths: NodePaths, staging: Staging) -> None:
    """Remove what a staging created (as far as it got), then the journal: the node is as before the apply."""
    for tmp in staging.temps:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
            fsync_dir(os.path.dirname(tmp))
    for d in reversed(staging.dirs):  # deepest first; one that is not empty now is not only ours
        with contextlib.suppress(OSError):
            os.rmdir(paths.real(d))
            fsync_dir(os.path.dirname(paths.real(d)))
    remove_journal(paths.real(paths.state_dir))


def _state_after(
    plan: Plan, paths: NodePaths, state: State, created: list[str], *, auth_hosts: frozenset[str], legacy: Legacy, containerd: str
) -> State:
    edited = dict(state.edited)
    for op in plan.operations:
        if op.kind is FileKind.CONTAINERD_CONFIG and op.path not in plan.owned:
            if op.action is Action.WRITE and op.content is not None:
                edited[op.path] = sha256(op.content)
            else:
                edited.pop(op.path, None)
    return state.with_changes(
        edited=edited,
        owned=dict(plan.owned),
        dirs=tuple(sorted(set(state.dirs) | {paths.host(d) for d in created})),
        auth_hosts=auth_hosts,
        legacy=legacy,
        containerd=containerd or state.containerd,
    )


def apply_plan(
    plan: Plan, paths: NodePaths, state: State, *, auth_hosts: frozenset[str], legacy: Legacy, containerd: str = ""
) -> State:
    """Carry out `plan`; return the state saved afterwards."""
    real_state = paths.real(paths.state_dir)
    os.makedirs(real_state, mode=0o700, exist_ok=True)
    state = _keep_originals(plan, paths, state)
    writes = [(paths.real(op.path), op) for op in plan.operations if op.action is Action.WRITE]
    staging = _staging(paths, writes)
    write_journal(real_state, staging)
    created: list[str] = []
    try:
        renames = _stage(writes, created)
    except NodeError:
        undo_staging(paths, staging)
        raise
    new_state = _state_after(plan, paths, state, created, auth_hosts=auth_hosts, legacy=legacy, containerd=containerd)
    deletes = tuple(paths.real(op.path) for op in plan.operations if op.action is Action.DELETE)
    commit = Commit(tuple(renames), deletes, new_state.dirs, new_state)
    write_journal(real_state, commit)  # the commit point
    return _finish(paths, commit)


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


def _finish(paths: NodePaths, commit: Commit) -> State:
    """Carry out a committed apply (again, after a crash: every step can be repeated); return the saved state."""
    for tmp, real in commit.renames:
        if os.path.exists(tmp):
            try:
                os.replace(tmp, real)
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise NodeError(f"write {real}: {e.strerror}") from None
                _write_in_place(tmp, real)
            fsync_dir(os.path.dirname(real))
    for real in commit.deletes:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(real)
            fsync_dir(os.path.dirname(real))
    # Directories nodecfg created and that are now empty go too (deepest first).
    keep = []
    for d in sorted(commit.dirs, key=len, reverse=True):
        try:
            os.rmdir(paths.real(d))
        except OSError:
            keep.append(d)
    saved = commit.state.with_changes(dirs=tuple(sorted(keep)))
    real_state = paths.real(paths.state_dir)
    save_state(real_state, saved)
    remove_journal(real_state)
    return saved


def _remove_temp_files(paths: NodePaths, scan_dirs: list[str]) -> int:
    """Temp files in `scan_dirs` and one level below (a journal-less kill of an earlier release, the daemon's candidate)."""
    removed = 0
    for d in scan_dirs:
        real = paths.real(d)
        for dirpath, dirnames, filenames in os.walk(real):
            for name in filenames:
                if name.endswith(TMP_SUFFIX):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(dirpath, name))
                        removed += 1
            if dirpath.count(os.sep) - real.count(os.sep) >= 1:
                dirnames.clear()
    return removed


def recover(paths: NodePaths, scan_dirs: list[str]) -> str | None:
    """Finish an apply that a kill interrupted after its commit point, or undo one killed before it.

    Returns what it did (None: nothing to do). The caller holds the node lock.
    """
    done = []
    entry = read_journal(paths.real(paths.state_dir))
    if isinstance(entry, Commit):
        _finish(paths, entry)
        done.append("finished an interrupted apply from its journal")
    elif isinstance(entry, Staging):
        undo_staging(paths, entry)
        done.append("undid the staging of an interrupted apply")
    removed = _remove_temp_files(paths, scan_dirs)
    if removed:
        done.append(f"removed {removed} temp file(s) of an interrupted apply")
    return "; ".join(done) or None


__all__ = ["NodePaths", "apply_plan", "recover", "state_bytes"]
