"""Edit the registry part of containerd's config.toml, keeping everything else byte for byte.

Pure: text in, text out. Each change is an operation (set a value / delete a key at a path),
applied by `toml_ops` to the document and to its plain parse, which must mean the same.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import tomlkit
import tomlkit.exceptions

from nodecfg.containerd import versions
from nodecfg.containerd.config_toml import (
    Path,
    get_path,
    leftover_table,
    parse_plain,
    reads_leftover,
    registry_table,
    table_label,
)
from nodecfg.containerd.errors import ConfigError
from nodecfg.containerd.legacy import Legacy, extract_legacy
from nodecfg.containerd.versions import ContainerdVersion
from nodecfg.render.credentials import Auth
from nodecfg.render.toml_layout import without_left_blank_lines
from nodecfg.render.toml_ops import DELETE, apply_ops, is_empty, plain_apply


@dataclass(frozen=True)
class ConfigEdit:
    """The edited config.toml and what was learned on the way."""

    text: str
    registry_table: Path
    holds_credentials: bool
    legacy: Legacy
    auth_hosts: frozenset[str]
    warnings: tuple[str, ...]


def _auth_value(auth: Auth) -> dict[str, str]:
    out: dict[str, str] = {}
    if auth.username is not None:
        out["username"] = auth.username
    if auth.password is not None:
        out["password"] = auth.password.reveal()
    if auth.identitytoken is not None:
        out["identitytoken"] = auth.identitytoken.reveal()
    return out


def _config_path_value(current: Any, hosts_dir: str, target: ContainerdVersion, where: str, warnings: list[str]) -> str:
    if not isinstance(current, str) or not current.strip():
        return hosts_dir
    roots = [r for r in current.split(":") if r]
    if current == hosts_dir or (roots == [hosts_dir] and target < versions.TRANSFER_PULL):
        return current
    if target >= versions.TRANSFER_PULL and len(roots) == 1:
        warnings.append(
            f"{where}: config_path {current!r} replaced by {hosts_dir!r}, where nodecfg writes; move the "
            f"hosts.toml files from {current} into it (containerd >= 2.1 pulling through the transfer "
            "service reads one directory)"
        )
        return hosts_dir
    if target >= versions.TRANSFER_PULL:
        # 2.1+ pulls through the transfer service, which takes the whole list as one directory
        # (containerd#12415, #12636; proven by tests/e2e): none of the roots would be read.
        warnings.append(
            f"{where}: config_path {current!r} replaced by {hosts_dir!r}: containerd >= 2.1 reads a "
            "list as one directory when pulling through the transfer service (containerd#12415); "
            "move hosts.toml files from the other directories into it"
        )
        return hosts_dir
    if hosts_dir in roots:
        warnings.append(f"{where}: config_path {current!r} is a list; kept as it is (containerd {target} reads each root)")
        return current
    warnings.append(f"{where}: config_path {current!r} does not hold {hosts_dir!r}: it goes first, the rest is kept")
    return ":".join([hosts_dir, *roots])


def minimal_config(target: ContainerdVersion) -> str:
    """A config.toml for a node that has none: containerd's defaults apply to everything else."""
    version = 3 if target >= versions.CONFIG_V3 else 2
    return (
        "# Written by nodecfg: the node had no config.toml. containerd's defaults apply to\n"
        "# everything not set here.\n"
        f"version = {version}\n"
    )


def edit_containerd_config(
    text: str,
    *,
    where: str,
    hosts_dir: str,
    auths: Mapping[str, Auth],
    owned_auth_hosts: frozenset[str],
    target: ContainerdVersion,
) -> ConfigEdit:
    """Set config_path and auth entries; move legacy mirrors/tls out. Raise ConfigError if unsafe."""
    if not text.strip():
        text = minimal_config(target) if not text else text + minimal_config(target)
    plain = parse_plain(text, where)
    try:
        tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as e:
        raise ConfigError([f"{where}: not valid TOML: {e}"]) from None
    table, warnings = registry_table(plain, target, where)
    registry = get_path(plain, table)
    if registry is not None and not isinstance(registry, Mapping):
        raise ConfigError([f"{where}: {table_label(table)} must be a table"])
    registry = registry or {}
    registry, ops, moved_warnings = _move_leftover(plain, table, registry, target, where)
    warnings += moved_warnings
    legacy, problems = extract_legacy(registry, f"{where}: {table_label(table)}")
    if problems:
        raise ConfigError(problems)

    if registry.get("mirrors"):
        ops.append(((*table, "mirrors"), DELETE))
    configs = registry.get("configs") or {}
    for host in sorted(legacy.tls):
        ops.append(((*table, "configs", host, "tls"), DELETE))
    ops.append(((*table, "config_path"), _config_path_value(registry.get("config_path"), hosts_dir, target, where, warnings)))
    for host in sorted(owned_auth_hosts - set(auths)):
        ops.append(((*table, "configs", host, "auth"), DELETE))
    for host in sorted(auths):
        value = _auth_value(auths[host])
        existing = get_path(configs, (host, "auth"))
        if existing == value:
            continue
        if existing is not None and host not in owned_auth_hosts:
            warnings.append(f"{where}: replacing credentials for {host} that nodecfg did not write (the original file is kept)")
        ops.append(((*table, "configs", host, "auth"), value))

    out, expected = apply_ops(text, plain, ops, table, where)
    return ConfigEdit(out, table, _holds_credentials(expected, table), legacy, frozenset(auths), tuple(warnings))


def _move_leftover(
    plain: Mapping[str, Any],
    table: Path,
    registry: Mapping[str, Any],
    target: ContainerdVersion,
    where: str,
) -> tuple[Mapping[str, Any], list[tuple[Path, Any]], list[str]]:
    """Move a version 3 file's leftover `io.containerd.grpc.v1.cri` registry table into `table`.

    Returns the registry settings as they are after the move, the operations and the warnings.
    On 2.3+ the leftover is what containerd reads, so its keys replace the images table's; on
    2.0-2.2 it is ignored, so it only goes (an upgrade to 2.3 would otherwise let it win over
    nodecfg's `config_path`). The original file is kept; uninstall puts the leftover back.
    """
    leftover = leftover_table(plain, target)
    ops: list[tuple[Path, Any]] = []
    warnings: list[str] = []
    if leftover is None:
        return registry, ops, warnings
    moved = get_path(plain, leftover)
    if not isinstance(moved, Mapping):
        raise ConfigError([f"{where}: {table_label(leftover)} must be a table"])
    label = f"[{table_label(leftover)}]"
    if reads_leftover(plain, target):
        for key in sorted(moved):
            ops.append(((*table, key), copy.deepcopy(moved[key])))
        revived = sorted(set(registry) - set(moved))
        warnings.append(
            f"{where}: {label} is left from version 2 and containerd {target} reads it instead of "
            f"[{table_label(table)}]: its settings ({', '.join(sorted(moved)) or 'none'}) are moved there"
            + (f"; {', '.join(revived)} of [{table_label(table)}] now take effect too" if revived else "")
        )
        registry = {**registry, **copy.deepcopy(dict(moved))}
    else:
        warnings.append(
            f"{where}: {label} is left from version 2; containerd {target} ignores it but 2.3+ would read it "
            f"instead of [{table_label(table)}]: removed"
        )
    ops.append((leftover, DELETE))
    return registry, ops, warnings


def _holds_credentials(plain: Mapping[str, Any], table: Path) -> bool:
    registry = get_path(plain, table)
    if not isinstance(registry, Mapping):
        return False
    configs = registry.get("configs") or {}
    return any(isinstance(v, Mapping) and v.get("auth") for v in configs.values()) or bool(registry.get("auths"))


def holds_credentials(text: str, *, where: str, target: ContainerdVersion) -> bool:
    """Whether containerd reads registry credentials from this config.toml (nodecfg's or anyone's)."""
    plain = parse_plain(text, where)
    table, _warnings = registry_table(plain, target, where)
    return _holds_credentials(plain, table)


def _without(registry_value: Any, key: str, owned_auth_hosts: frozenset[str]) -> Any:
    """A registry key's value without what nodecfg itself writes there (its credential entries)."""
    if key != "configs" or not isinstance(registry_value, Mapping):
        return registry_value
    out = {}
    for host, entry in registry_value.items():
        kept = (
            {k: v for k, v in entry.items() if k != "auth"} if host in owned_auth_hosts and isinstance(entry, Mapping) else entry
        )
        if kept or host not in owned_auth_hosts:
            out[host] = kept
    return out


def _restore_leftover(
    plain: Mapping[str, Any], before: Mapping[str, Any], table: Path, target: ContainerdVersion, owned_auth_hosts: frozenset[str]
) -> list[tuple[Path, Any]]:
    """The operations that put back a leftover registry table nodecfg moved (see `_move_leftover`).

    The keys it moved into `table` go back to what `table` had, but only if nobody changed them
    since (nodecfg's own `config_path` and credentials aside); otherwise ConfigError: which of the
    two tables an admin's later change belongs in cannot be told.
    """
    leftover = leftover_table(before, target)
    if leftover is None or get_path(plain, leftover) is not None:
        return []
    ops: list[tuple[Path, Any]] = []
    old_registry = get_path(before, table) or {}
    moved = get_path(before, leftover) or {}
    if reads_leftover(before, target):
        now = get_path(plain, table) or {}
        changed = sorted(
            k
            for k in moved
            if k != "config_path" and _without(now.get(k), k, owned_auth_hosts) != _without(moved[k], k, owned_auth_hosts)
        )
        if changed:
            raise ConfigError(
                [
                    f"config.toml: {', '.join(changed)} of [{table_label(table)}] changed since nodecfg moved the leftover "
                    f"[{table_label(leftover)}] there; nodecfg cannot tell which table the change belongs in"
                ]
            )
        for key in sorted(moved):
            ops.append(((*table, key), copy.deepcopy(old_registry[key]) if key in old_registry else DELETE))
    ops.append((leftover, copy.deepcopy(moved)))
    return ops


def remove_nodecfg_edits(
    text: str,
    *,
    where: str,
    original: str | None,
    owned_auth_hosts: frozenset[str],
    moved_legacy: bool,
    target: ContainerdVersion,
) -> str:
    """config.toml without nodecfg's edits, everything else byte for byte (for uninstall).

    `config_path` goes back to its value in `original` (or away), nodecfg's credential entries go,
    and legacy `mirrors` / `configs.*.tls` that nodecfg moved into hosts.toml come back from
    `original`. Raise ConfigError when that cannot be done exactly.
    """
    plain = parse_plain(text, where)
    table, _warnings = registry_table(plain, target, where)
    before = parse_plain(original, f"{where} (original)") if original else {}
    old_registry = get_path(before, table) or {}
    ops: list[tuple[Path, Any]] = []
    old_path = old_registry.get("config_path")
    ops.append(((*table, "config_path"), old_path if isinstance(old_path, str) else DELETE))
    for host in sorted(owned_auth_hosts):
        ops.append(((*table, "configs", host, "auth"), DELETE))
    ops += _restore_leftover(plain, before, table, target, owned_auth_hosts)
    if moved_legacy:
        if original is None:
            raise ConfigError(
                [f"{where}: nodecfg moved legacy mirrors/tls out of this file but kept no original to restore them from"]
            )
        if old_registry.get("mirrors"):
            ops.append(((*table, "mirrors"), copy.deepcopy(old_registry["mirrors"])))
        for host, entry in sorted((old_registry.get("configs") or {}).items()):
            if isinstance(entry, Mapping) and entry.get("tls"):
                ops.append(((*table, "configs", host, "tls"), copy.deepcopy(entry["tls"])))
    _out, after = apply_ops(text, plain, ops, table, where)
    # Tables nodecfg created and that are empty now go too.
    if get_path(before, (*table, "configs")) is None and is_empty(after, (*table, "configs")):
        ops.append(((*table, "configs"), DELETE))
        plain_apply(after, (*table, "configs"), DELETE)
    if get_path(before, table) is None and is_empty(after, table):
        ops.append((table, DELETE))
    out, _expected = apply_ops(text, plain, ops, table, where)
    return without_left_blank_lines(text, out, original) if original is not None and out != text else out
