"""Whether containerd reads the edited config.toml's registry settings once its imports are merged (pure).

nodecfg edits one table of the main config.toml. What containerd runs with is that file merged
with every file it imports, each migrated by the release's rules (`containerd/effective`): a
drop-in can set another `config_path`, replace the whole CRI plugin table (1.x), or turn a version
migration on or off. nodecfg never renders a config.toml whose settings would not take effect:
each such case is a problem naming the file that shadows the edit, and how to fix it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from nodecfg.containerd import versions
from nodecfg.containerd.config_toml import get_path, table_label
from nodecfg.containerd.effective import ConfigFile, Effective, effective_config, first_change
from nodecfg.containerd.versions import ContainerdVersion
from nodecfg.render.config_edit import ConfigEdit


def _shadow(files: Sequence[ConfigFile], target: ContainerdVersion, what: str, *, wanted_in: str, differs: Any, seen: str) -> str:
    """One problem: `what` nodecfg wrote is not what containerd would read, and which file is why."""
    main = files[0].path
    by = first_change(files, target, differs)
    if by is None:
        return (
            f"{main}: containerd {target} would not read the {what} nodecfg writes in [{wanted_in}] ({seen}); nothing was written"
        )
    if target < versions.CONFIG_V3:
        how = (
            " (containerd 1.x replaces a plugin's whole table with an imported file's). Move the CRI plugin's settings "
            f"out of {by} into {main}, or remove them there"
        )
    else:
        how = f". Move the registry settings out of {by} (or make them the same there)"
    return (
        f"{main}: containerd {target} would not read the {what} nodecfg writes in [{wanted_in}]: {by}, which {main} "
        f"imports, overrides it ({seen}){how}, then run nodecfg again; nothing was written"
    )


def _refused_next_to_config_path(files: Sequence[ConfigFile], effective: Effective, target: ContainerdVersion) -> list[str]:
    """Legacy settings an imported file brings next to nodecfg's `config_path`: the CRI plugin then refuses to load."""
    legacy = ["mirrors"] if effective.registry.get("mirrors") else []
    configs = effective.registry.get("configs")
    if target < versions.CONFIG_V3 and isinstance(configs, Mapping):
        legacy += [f"configs.{h!r}.tls" for h, c in sorted(configs.items()) if isinstance(c, Mapping) and c.get("tls")]
    out = []
    for key in legacy:
        by = first_change(files, target, lambda e, k=key: _has(e, k)) or files[0].path
        out.append(
            f"{by}: `{key}` next to the config_path nodecfg writes: containerd {target} refuses to load its CRI plugin "
            '("`mirrors` cannot be set when `config_path` is provided"). Move it into config.toml\'s registry table '
            "(nodecfg moves such settings into hosts.toml) or remove it, then run nodecfg again; nothing was written"
        )
    return out


def _has(e: Effective, key: str) -> bool:
    """Whether the registry `e` holds legacy `key` ("mirrors" or "configs.'<host>'.tls")."""
    if key == "mirrors":
        return bool(e.registry.get("mirrors"))
    host = key.split("'")[1]
    configs = e.registry.get("configs")
    entry = configs.get(host) if isinstance(configs, Mapping) else None
    return isinstance(entry, Mapping) and bool(entry.get("tls"))


def shadowing_problems(edit: ConfigEdit, imported: Sequence[ConfigFile], target: ContainerdVersion, where: str) -> list[str]:
    """What would keep containerd `target` from running with the edit's `config_path` and credentials.

    Values are never quoted for credentials: only host names and `config_path` appear.
    """
    edited = tomllib.loads(edit.text)
    files = [ConfigFile(where, edited), *imported]
    effective = effective_config(files, target)
    if effective.problems:
        return list(effective.problems)
    table = edit.registry_table
    label = table_label(table)
    out: list[str] = []
    wanted_path = get_path(edited, (*table, "config_path"))

    def path_differs(e: Effective) -> bool:
        return bool(e.config_path != wanted_path)

    if path_differs(effective):
        seen = (
            f"it would read config_path = {effective.config_path!r}" if effective.config_path else "it would read no config_path"
        )
        out.append(_shadow(files, target, "config_path", wanted_in=label, differs=path_differs, seen=seen))
    out += _refused_next_to_config_path(files, effective, target)
    for host in sorted(edit.auth_hosts):
        wanted_auth = get_path(edited, (*table, "configs", host, "auth"))

        def auth_differs(e: Effective, host: str = host, wanted: Mapping[str, Any] | None = wanted_auth) -> bool:
            got = e.auth(host)
            return bool((dict(got) if got is not None else None) != wanted)

        if auth_differs(effective):
            seen = "it would read other credentials for it" if effective.auth(host) else "it would read none for it"
            out.append(_shadow(files, target, f"credentials for {host}", wanted_in=label, differs=auth_differs, seen=seen))
    return out
