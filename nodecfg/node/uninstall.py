"""Take nodecfg off a node: its files go, the originals it kept come back, its config.toml edits go."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass

from nodecfg.node.apply import apply_plan
from nodecfg.node.containerd import detect_target
from nodecfg.node.fs import NodeError, fsync_dir, read_file
from nodecfg.node.paths import ETC_HOSTS, NodePaths
from nodecfg.node.state import STATE_FILE, State, load_state
from nodecfg.plan import CurrentFile, Plan
from nodecfg.plan.uninstall import UninstallError, UninstallInputs, config_edited, make_uninstall_plan


@dataclass(frozen=True)
class Uninstall:
    """What uninstall will do; `plan` is applied with the same journal as `apply`."""

    plan: Plan
    state: State
    notes: tuple[str, ...]


def _original(paths: NodePaths, state: State, path: str) -> CurrentFile:
    """The kept original of `path` (content None: it did not exist); `path` is in state.originals."""
    o = state.originals[path]
    if o.backup is None:
        return CurrentFile(None)
    info = read_file(os.path.join(paths.real(paths.state_dir), "originals", o.backup))
    if info.content is None:
        raise NodeError(f"the original of {path} is missing from {paths.state_dir}/originals/{o.backup}")
    return CurrentFile(info.content, o.mode)


def _current(paths: NodePaths, path: str) -> CurrentFile:
    info = read_file(paths.real(path))
    return CurrentFile(info.content, info.mode)


def read_uninstall_inputs(
    paths: NodePaths, state: State, containerd_version: str | None, *, force_original: bool = False
) -> UninstallInputs:
    """Read what the uninstall plan needs: the files nodecfg touched, their originals, the containerd release.

    config.toml's original and the containerd release are looked up only when config.toml is there
    and nodecfg edited it (only then does the plan use them).
    """
    config = paths.containerd_config
    current: dict[str, CurrentFile] = {}
    originals: dict[str, CurrentFile] = {}
    for path in sorted(set(state.owned) | set(state.originals)):
        if path == config:
            continue
        current[path] = _current(paths, path)
        if path in state.originals:
            originals[path] = _original(paths, state, path)
    current[ETC_HOSTS] = _current(paths, ETC_HOSTS)
    current[config] = _current(paths, config)
    target = None
    if current[config].content is not None and config_edited(
        config, state.owned, state.originals, state.auth_hosts, bool(state.legacy)
    ):
        if config in state.originals:
            originals[config] = _original(paths, state, config)
        target = detect_target(paths, containerd_version, state).version
    return UninstallInputs(
        owned=state.owned,
        originals=originals,
        current=current,
        edited=state.edited,
        auth_hosts=state.auth_hosts,
        moved_legacy=bool(state.legacy),
        config_path=config,
        etc_hosts_path=ETC_HOSTS,
        target=target,
        force_original=force_original,
    )


def plan_uninstall(paths: NodePaths, containerd_version: str | None, *, force_original: bool = False) -> Uninstall:
    """Work out the operations that take nodecfg off the node. Changes nothing."""
    state = load_state(paths.real(paths.state_dir))
    inputs = read_uninstall_inputs(paths, state, containerd_version, force_original=force_original)
    try:
        plan, notes = make_uninstall_plan(inputs)
    except UninstallError as e:
        raise NodeError(str(e)) from None
    return Uninstall(plan, state, notes)


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
