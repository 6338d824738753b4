"""Uninstall plan (pure): what nodecfg recorded + the node's files now -> the operations that undo it."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

from nodecfg.containerd.errors import ConfigError
from nodecfg.containerd.versions import ContainerdVersion
from nodecfg.plan import Action, ChangeClass, CurrentFile, Operation, Plan, sha256
from nodecfg.render.config_edit import holds_credentials, remove_nodecfg_edits
from nodecfg.render.etc_hosts import HostsFileError, edit_hosts_file
from nodecfg.render.files import FileKind
from nodecfg.render.hosts import kind_of_file_name


class UninstallError(ValueError):
    """The node's files cannot be given back as they were (the message says which and why)."""


@dataclass(frozen=True)
class UninstallInputs:
    """The plain values the uninstall plan is made from (host paths throughout)."""

    owned: Mapping[str, str]  # path -> sha256 of what nodecfg wrote there
    originals: Mapping[str, CurrentFile]  # path -> the file before nodecfg (content None: there was none)
    current: Mapping[str, CurrentFile]  # each owned or kept path, config.toml and /etc/hosts as they are now
    edited: Mapping[str, str]  # path -> sha256 of what nodecfg last wrote into a file it edits
    auth_hosts: frozenset[str]  # hosts whose config.toml auth tables nodecfg wrote
    moved_legacy: bool  # nodecfg moved legacy registry settings out of config.toml
    config_path: str
    etc_hosts_path: str
    target: ContainerdVersion | None  # None only when config.toml gets no edit (see `config_edited`)
    force_original: bool = False


def config_edited(
    config_path: str, owned: Mapping[str, str], kept: Mapping[str, object], auth_hosts: frozenset[str], moved_legacy: bool
) -> bool:
    """True when nodecfg wrote or edited config.toml, so uninstall has something to take out of it."""
    return config_path in owned or config_path in kept or bool(auth_hosts) or moved_legacy


def _current(inputs: UninstallInputs, path: str) -> CurrentFile:
    return inputs.current.get(path, CurrentFile(None))


def _restore_files(inputs: UninstallInputs, notes: list[str]) -> list[Operation]:
    """Every file nodecfg owns or replaced but config.toml: the original back, or the file gone."""
    ops: list[Operation] = []
    for path in sorted(set(inputs.owned) | set(inputs.originals)):
        if path == inputs.config_path:
            continue
        kind = kind_of_file_name(posixpath.basename(path))
        current = _current(inputs, path)
        original = inputs.originals.get(path)
        if original is not None and original.content is not None:
            if current.content != original.content:
                mode = original.mode if original.mode is not None else 0o644
                ops.append(Operation(Action.WRITE, path, ChangeClass.HOT, kind, original.content, mode))
        elif current.content is not None and path in inputs.owned:
            if sha256(current.content) != inputs.owned[path]:
                notes.append(f"{path} was changed after nodecfg wrote it; removed anyway (nodecfg owns it)")
            ops.append(Operation(Action.DELETE, path, ChangeClass.HOT, kind))
    return ops


def _strip_etc_hosts(inputs: UninstallInputs) -> Operation | None:
    """The write that takes nodecfg's block out of /etc/hosts, or None when it has none."""
    path = inputs.etc_hosts_path
    hosts_file = _current(inputs, path)
    try:
        # No aliases: the same edit apply makes when the list is emptied (None: no block to remove).
        stripped = edit_hosts_file(hosts_file.content.decode("utf-8"), []) if hosts_file.content else None
    except (HostsFileError, UnicodeDecodeError) as e:
        raise UninstallError(f"{path}: {e}") from None
    if stripped is None:
        return None
    mode = hosts_file.mode if hosts_file.mode is not None else 0o644
    return Operation(Action.WRITE, path, ChangeClass.HOT, FileKind.ETC_HOSTS, stripped.encode(), mode)


def _config_mode(
    where: str,
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
    try:
        added = holds_credentials(desired.decode("utf-8"), where=where, target=target) and not holds_credentials(
            original.decode("utf-8"), where=f"{where} (original)", target=target
        )
    except (ConfigError, UnicodeDecodeError):
        added = True  # cannot tell: keep it closed
    return original_mode & current if added else original_mode


def _desired_config(
    inputs: UninstallInputs, current: bytes, original: CurrentFile | None, target: ContainerdVersion, notes: list[str]
) -> bytes | None:
    """config.toml after uninstall (None: there was none): the original, or the file without nodecfg's edits."""
    config = inputs.config_path
    untouched_since = sha256(current) in (inputs.edited.get(config), inputs.owned.get(config))
    if original is not None and (untouched_since or inputs.force_original):
        return original.content  # byte for byte what was there before nodecfg
    if original is not None:
        notes.append(f"{config} was changed after nodecfg's last write: only nodecfg's edits are taken out")
    try:
        text = remove_nodecfg_edits(
            current.decode("utf-8"),
            where=config,
            original=original.content.decode("utf-8") if original is not None and original.content is not None else None,
            owned_auth_hosts=inputs.auth_hosts,
            moved_legacy=inputs.moved_legacy,
            target=target,
        )
    except ConfigError as e:
        raise UninstallError("; ".join(e.problems) + " (--force-original restores the original file as it was)") from None
    return text.encode()


def _restore_config(inputs: UninstallInputs, notes: list[str]) -> Operation | None:
    """The operation that gives config.toml back, or None when it needs none."""
    config = inputs.config_path
    current = _current(inputs, config)
    edited = config_edited(config, inputs.owned, inputs.originals, inputs.auth_hosts, inputs.moved_legacy)
    if not edited or current.content is None:
        return None
    if inputs.target is None:
        raise UninstallError(f"{config}: the containerd release is needed to take nodecfg's edits out")
    original = inputs.originals.get(config)
    desired = _desired_config(inputs, current.content, original, inputs.target, notes)
    if desired is None:
        return Operation(Action.DELETE, config, ChangeClass.COLD, FileKind.CONTAINERD_CONFIG)
    file_mode = _config_mode(
        config,
        inputs.target,
        desired,
        original=original.content if original is not None else None,
        original_mode=original.mode if original is not None else None,
        current_mode=current.mode,
    )
    if (desired, file_mode) == (current.content, current.mode):
        return None
    # containerd reads the file's bytes, not its mode: a mode-only change needs no restart.
    change = ChangeClass.HOT if desired == current.content else ChangeClass.COLD
    return Operation(Action.WRITE, config, change, FileKind.CONTAINERD_CONFIG, desired, file_mode)


def make_uninstall_plan(inputs: UninstallInputs) -> tuple[Plan, tuple[str, ...]]:
    """The operations that take nodecfg off the node, and notes on what it finds changed since."""
    notes: list[str] = []
    ops = _restore_files(inputs, notes)
    hosts_op = _strip_etc_hosts(inputs)
    if hosts_op is not None:
        ops.append(hosts_op)
    config_op = _restore_config(inputs, notes)
    if config_op is not None:
        ops.append(config_op)
    # Files that point at others go first; config.toml last, as in apply.
    ops.sort(key=lambda op: (op.kind is FileKind.CONTAINERD_CONFIG, op.action is Action.WRITE))
    return Plan(tuple(ops), owned={}), tuple(notes)
