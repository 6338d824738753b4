"""Take nodecfg off a node: its files go, the originals it kept come back, its config.toml edits go."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass

from nodecfg.containerd.errors import ConfigError
from nodecfg.containerd.versions import ContainerdVersion
from nodecfg.node.apply import apply_plan
from nodecfg.node.containerd import detect_target
from nodecfg.node.fs import NodeError, fsync_dir, read_file
from nodecfg.node.paths import ETC_HOSTS, NodePaths
from nodecfg.node.state import STATE_FILE, State, load_state
from nodecfg.plan import Action, ChangeClass, Operation, Plan, sha256
from nodecfg.render.config_edit import holds_credentials, remove_nodecfg_edits
from nodecfg.render.etc_hosts import HostsFileError, edit_hosts_file
from nodecfg.render.files import FileKind
from nodecfg.render.hosts import kind_of_file_name


@dataclass(frozen=True)
class Uninstall:
    """What uninstall will do; `plan` is applied with the same journal as `apply`."""

    plan: Plan
    state: State
    notes: tuple[str, ...]


def _original(paths: NodePaths, state: State, path: str) -> tuple[bool, bytes | None, int | None]:
    """(kept, content, mode) of the original of `path`; content None: it did not exist."""
    o = state.originals.get(path)
    if o is None:
        return False, None, None
    if o.backup is None:
        return True, None, None
    info = read_file(os.path.join(paths.real(paths.state_dir), "originals", o.backup))
    if info.content is None:
        raise NodeError(f"the original of {path} is missing from {paths.state_dir}/originals/{o.backup}")
    return True, info.content, o.mode


def _config_mode(
    paths: NodePaths,
    target: ContainerdVersion,
    desired: bytes,
    *,
    original: bytes | None,
    original_mode: int | None,
    current_mode: int | None,
) -> int:
    """config.toml's mode after uninstall: the original's (nodecfg made it 0600 for its credentials).

    Unless what stays holds credentials the original did not (the user's own, added since): then
    the file stays no more open than it is now.
    """
    current = current_mode if current_mode is not None else 0o644
    if original is None or original_mode is None:
        return current
    where = paths.containerd_config
    try:
        added = holds_credentials(desired.decode("utf-8"), where=where, target=target) and not holds_credentials(
            original.decode("utf-8"), where=f"{where} (original)", target=target
        )
    except (ConfigError, UnicodeDecodeError):
        added = True  # cannot tell: keep it closed
    return original_mode & current if added else original_mode


def plan_uninstall(paths: NodePaths, containerd_version: str | None, *, force_original: bool = False) -> Uninstall:
    """Work out the operations that take nodecfg off the node. Changes nothing."""
    state = load_state(paths.real(paths.state_dir))
    notes: list[str] = []
    ops: list[Operation] = []
    config = paths.containerd_config
    for path in sorted(set(state.owned) | set(state.originals)):
        if path == config:
            continue
        kind = kind_of_file_name(os.path.basename(path))
        current = read_file(paths.real(path))
        kept, content, mode = _original(paths, state, path)
        if kept and content is not None:
            if current.content != content:
                ops.append(Operation(Action.WRITE, path, ChangeClass.HOT, kind, content, mode if mode is not None else 0o644))
        elif current.content is not None and (path in state.owned):
            if sha256(current.content) != state.owned[path]:
                notes.append(f"{path} was changed after nodecfg wrote it; removed anyway (nodecfg owns it)")
            ops.append(Operation(Action.DELETE, path, ChangeClass.HOT, kind))
    hosts_file = read_file(paths.real(ETC_HOSTS))
    try:
        # No aliases: the same edit apply makes when the list is emptied (None: no block to remove).
        stripped = edit_hosts_file(hosts_file.content.decode("utf-8"), []) if hosts_file.content else None
    except (HostsFileError, UnicodeDecodeError) as e:
        raise NodeError(f"{ETC_HOSTS}: {e}") from None
    if stripped is not None:
        mode = hosts_file.mode if hosts_file.mode is not None else 0o644
        ops.append(Operation(Action.WRITE, ETC_HOSTS, ChangeClass.HOT, FileKind.ETC_HOSTS, stripped.encode(), mode))
    edited = config in state.owned or config in state.originals or state.auth_hosts or bool(state.legacy)
    current_cfg = read_file(paths.real(config))
    if edited and current_cfg.content is not None:
        kept, original, mode = _original(paths, state, config)
        target = detect_target(paths, containerd_version, state).version
        untouched_since = sha256(current_cfg.content) in (state.edited.get(config), state.owned.get(config))
        desired: bytes | None
        if kept and (untouched_since or force_original):
            desired = original  # byte for byte what was there before nodecfg
        else:
            if kept:
                notes.append(f"{config} was changed after nodecfg's last write: only nodecfg's edits are taken out")
            try:
                text = remove_nodecfg_edits(
                    current_cfg.content.decode("utf-8"),
                    where=config,
                    original=original.decode("utf-8") if original is not None else None,
                    owned_auth_hosts=state.auth_hosts,
                    moved_legacy=bool(state.legacy),
                    target=target,
                )
            except ConfigError as e:
                raise NodeError("; ".join(e.problems) + " (--force-original restores the original file as it was)") from None
            desired = text.encode()
        if desired is None:
            ops.append(Operation(Action.DELETE, config, ChangeClass.COLD, FileKind.CONTAINERD_CONFIG))
        else:
            file_mode = _config_mode(paths, target, desired, original=original, original_mode=mode, current_mode=current_cfg.mode)
            if (desired, file_mode) != (current_cfg.content, current_cfg.mode):
                ops.append(Operation(Action.WRITE, config, ChangeClass.COLD, FileKind.CONTAINERD_CONFIG, desired, file_mode))
    # Files that point at others go first; config.toml last, as in apply.
    ops.sort(key=lambda op: (op.kind is FileKind.CONTAINERD_CONFIG, op.action is Action.WRITE))
    return Uninstall(Plan(tuple(ops), owned={}), state, tuple(notes))


def carry_out(paths: NodePaths, u: Uninstall) -> None:
    """Apply the plan (journaled) and remove nodecfg's state directory. The caller holds the node lock."""
    apply_plan(u.plan, paths, u.state, auth_hosts=frozenset(), legacy=State().legacy)
    real = paths.real(paths.state_dir)
    # state.json first: killed while the rest goes, the next run finds no record naming originals
    # that are half removed (every original is back in place by now).
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(real, STATE_FILE))
        fsync_dir(real)
    shutil.rmtree(real, ignore_errors=True)
    if os.path.exists(real):
        raise NodeError(f"could not remove {real}")
