"""containerd's config.toml as containerd reads it (pure; docs/containerd.md).

The version line, the registry table, and the registry settings the CRI plugin takes from it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nodecfg.containerd import paths, versions
from nodecfg.containerd.effective import ConfigFile, Effective, effective_config, first_change
from nodecfg.containerd.errors import ConfigError
from nodecfg.containerd.legacy import Legacy, extract_legacy
from nodecfg.containerd.versions import ContainerdTarget, ContainerdVersion, VersionSource

V1_TABLE = ("plugins", "cri", "registry")
V1_LONG_TABLE = ("plugins", "io.containerd.grpc.v1.cri", "registry")
V2_TABLE = ("plugins", "io.containerd.grpc.v1.cri", "registry")
V3_TABLE = ("plugins", "io.containerd.cri.v1.images", "registry")
Path = tuple[str, ...]


def table_label(path: Path) -> str:
    """`plugins."io.containerd.grpc.v1.cri".registry` from a key path."""
    return ".".join(p if p.replace("_", "").isalnum() else f'"{p}"' for p in path)


def parse_plain(text: str, where: str) -> dict[str, Any]:
    """Parse config.toml with tomllib, as a ConfigError naming the file and line on failure."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{where}: not valid TOML, containerd would refuse it: {e}"]) from None


def config_version(plain: Mapping[str, Any]) -> int:
    """The file's `version` (1 when absent, as containerd reads it)."""
    v = plain.get("version", 1)
    return v if isinstance(v, int) and not isinstance(v, bool) else 1


def effective_target(target: ContainerdTarget, text: str) -> ContainerdTarget:
    """A version 3 config.toml means containerd >= 2.0, a version 4 one >= 2.3; use that when the version was only assumed."""
    if target.source is VersionSource.ASSUMED and text.strip():
        try:
            plain = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            return target
        version = config_version(plain)
        if version >= 4 and target.version < versions.CONFIG_V4:
            return ContainerdTarget(versions.CONFIG_V4, VersionSource.ASSUMED)
        if version >= 3 and target.version < versions.CONFIG_V3:
            return ContainerdTarget(versions.CONFIG_V3, VersionSource.ASSUMED)
    return target


def get_path(tree: Any, path: Path) -> Any:
    """The value at `path` in a parsed TOML tree, or None."""
    cur = tree
    for p in path:
        if not isinstance(cur, Mapping) or p not in cur:
            return None
        cur = cur[p]
    return cur


def highest_version(target: ContainerdVersion) -> int:
    """The highest config.toml `version` the release reads as such (2.3+: 4; 2.0-2.2: 3; 1.x: 2)."""
    if target >= versions.CONFIG_V4:
        return 4
    return 3 if target >= versions.CONFIG_V3 else 2


def _refuse_version(version: int, target: ContainerdVersion, where: str) -> None:
    """ConfigError when the release does not load a file of this `version`, or drops its registry table."""
    if version > highest_version(target):
        if target < versions.CONFIG_V3:
            # 1.6 loads the file and ignores its v3 tables without a word; 1.7 refuses to load it.
            raise ConfigError(
                [
                    f"{where}: version = {version} is only read by containerd >= 2.0, but the target is "
                    f"containerd {target}: its registry settings would be ignored (pass the right "
                    "--containerd-version, or convert the file to version = 2)"
                ]
            )
        raise ConfigError(
            [
                f"{where}: version = {version} is only read by containerd >= {versions.CONFIG_V4}; containerd "
                f'{target} refuses to start with it ("expected containerd config version equal to or less than '
                f'{highest_version(target)}"); nothing was written'
            ]
        )
    if version < 2 and versions.CONFIG_V3 <= target < versions.CONFIG_V4:
        # Observed on 2.0.11 and 2.1.9: a version 1 file loads, but its CRI registry table is dropped
        # ("Ignoring unknown key in TOML for plugin" key=registry): config_path and auth would never
        # be read. 2.3 reads it again. Rewriting the file's version would rename every plugin: not ours.
        raise ConfigError(
            [
                f"{where}: version = {version} (or no version line): containerd {target} does not read the "
                "registry settings of such a file; convert it first (`containerd config migrate`, "
                "or a `version = 2` file with the long plugin IDs), nothing was written"
            ]
        )


def leftover_table(plain: Mapping[str, Any], target: ContainerdVersion) -> Path | None:
    """A version 3 file's `io.containerd.grpc.v1.cri` registry table, left from version 2, if any.

    2.0-2.2 ignore it; 2.3+ migrate every version 3 file again, and the leftover then replaces the
    `io.containerd.cri.v1.images` registry table as a whole (seen with 2.3.4 and 2.4.0-beta.0's
    `config dump`). nodecfg moves it into the images table, as it moves legacy `mirrors`.
    """
    if target >= versions.CONFIG_V3 and config_version(plain) == 3 and isinstance(get_path(plain, V2_TABLE), Mapping):
        return V2_TABLE
    return None


def reads_leftover(plain: Mapping[str, Any], target: ContainerdVersion) -> bool:
    """Whether the release takes its registry settings from the leftover table (2.3+)."""
    return leftover_table(plain, target) is not None and target >= versions.CONFIG_V4


def registry_table(plain: Mapping[str, Any], target: ContainerdVersion, where: str) -> tuple[Path, list[str]]:
    """Which table of this file containerd reads registry settings from, for this release.

    Decided by the `version` line and the release, as containerd decides (docs/containerd.md, ## config.toml):
    version 1 -> `plugins.cri` (or the long plugin ID if that is what the file uses; 2.0-2.2 drop
    it); version 2 -> `io.containerd.grpc.v1.cri`, except on 2.x when only an
    `io.containerd.cri.v1.images` registry table is there (AKS ships that shape: 2.x migrates the
    old table only when there is one); version 3 and 4 -> `io.containerd.cri.v1.images`.
    Tables of another schema that hold registry settings are dead config: warn about them. The
    leftover of a version 3 file (`leftover_table`) is the caller's to move.
    """
    version = config_version(plain)
    _refuse_version(version, target, where)
    warnings: list[str] = []
    if version >= 3:
        chosen = V3_TABLE
    elif version == 2:
        only_images = get_path(plain, V2_TABLE) is None and isinstance(get_path(plain, V3_TABLE), Mapping)
        chosen = V3_TABLE if target >= versions.CONFIG_V3 and only_images else V2_TABLE
    else:
        # 1.x looks the CRI plugin of a version 1 file up by its short name only; 2.3+ rename
        # `cri` to the long name, over a long-named table if both are there.
        short_wins = target < versions.CONFIG_V3 or get_path(plain, V1_TABLE[:2]) is not None
        chosen = V1_TABLE if short_wins or get_path(plain, V1_LONG_TABLE[:2]) is None else V1_LONG_TABLE
        warnings.append(
            f"{where}: config version 1 is deprecated (containerd 2.0-2.2 do not read its registry table); "
            f"nodecfg edits {table_label(chosen)}"
        )
    leftover = leftover_table(plain, target)
    for other in (V1_TABLE, V2_TABLE, V3_TABLE):
        if other in (chosen, leftover) or get_path(plain, other) is None or (version < 2 and other == V1_LONG_TABLE):
            continue
        warnings.append(
            f"{where}: [{table_label(other)}] is not read for a version = {version} file by containerd "
            f"{target}; nodecfg writes [{table_label(chosen)}] and leaves it as it is"
        )
    return chosen, warnings


DEFAULT_ROOTS_2_2 = (paths.HOSTS_DIR, "/etc/docker/certs.d")
_DEFAULT_ROOTS_FROM = versions.ContainerdVersion(2, 2, 0)


@dataclass(frozen=True)
class RegistrySettings:
    """The registry part of config.toml as containerd will read it (no secret values)."""

    file: str
    exists: bool
    table: str
    config_path: str | None  # as written; None when unset
    roots: tuple[str, ...]  # the directories CRI consults, in order
    roots_note: str
    mirrors: Mapping[str, tuple[str, ...]]  # legacy registry.mirrors
    tls_hosts: tuple[str, ...]  # legacy configs.*.tls
    auth: Mapping[str, str]  # contacted host -> which fields are set ("username+password", ...)
    header_names: tuple[str, ...]
    problems: tuple[str, ...]  # what makes the CRI plugin fail to load or ignore the settings
    # Where what containerd reads differs from this file's own registry table: the table or the
    # imported file that wins over it, and what it changes.
    shadowed: tuple[str, ...] = ()
    version: int = 2


def _auth_kind(entry: Any) -> str:
    if not isinstance(entry, Mapping):
        return "invalid (not a table)"
    kinds = [k for k in ("username", "password", "auth", "identitytoken") if entry.get(k)]
    return "+".join(kinds) if kinds else "empty"


def _parse_settings(text: str | None, where: str, problems: list[str]) -> dict[str, Any]:
    """The parsed file, empty when it does not exist or does not parse (then said in `problems`)."""
    if text is None:
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        problems.append(f"{where}: not valid TOML, containerd will not start: {e}")
        return {}


def _settings_table(plain: Mapping[str, Any], target: ContainerdTarget, where: str, problems: list[str]) -> Path:
    """The registry table containerd reads; the v3 one, with the reason in `problems`, when none is read."""
    try:
        table, _ = registry_table(plain, target.version, where)
    except ConfigError as e:
        problems += e.problems
        return V3_TABLE
    return table


def _hosts_roots(
    config_path: str | None, legacy: Legacy, target: ContainerdTarget, label: str, problems: list[str]
) -> tuple[tuple[str, ...], str]:
    """The hosts directories CRI consults and why; the legacy settings that stop CRI go in `problems`."""
    if config_path is not None:
        if legacy.mirrors:
            problems.append(
                f"{label} has both `mirrors` and `config_path`: the CRI plugin refuses to "
                'load ("`mirrors` cannot be set when `config_path` is provided"); no pulls through CRI'
            )
        if legacy.tls and target.version.major < 2:
            problems.append(
                f"{label} has `configs.*.tls` ({', '.join(sorted(legacy.tls))}) next to "
                f"`config_path`: containerd {target.version} refuses to load the CRI plugin"
            )
        return tuple(r for r in config_path.split(":") if r), f"config_path = {config_path!r}"
    if not legacy.mirrors and target.version >= _DEFAULT_ROOTS_FROM:
        return DEFAULT_ROOTS_2_2, f"config_path unset: containerd {target.version} defaults to {':'.join(DEFAULT_ROOTS_2_2)}"
    return (), "config_path unset: CRI consults no hosts directory"


def _auth_kinds(registry: Mapping[str, Any]) -> dict[str, str]:
    """Contacted host -> which credential fields are set, from `configs` and the legacy `auths` map."""
    auth: dict[str, str] = {}
    configs = registry.get("configs")
    if isinstance(configs, Mapping):
        for host, entry in configs.items():
            if isinstance(entry, Mapping) and "auth" in entry:
                auth[str(host)] = _auth_kind(entry["auth"])
    auths = registry.get("auths")
    if isinstance(auths, Mapping):  # 1.x legacy map keyed by URL, copied into configs
        for key, entry in auths.items():
            host = str(key).split("://", 1)[-1].split("/", 1)[0]
            auth.setdefault(host, _auth_kind(entry) + " (legacy registry.auths)")
    return auth


def _shown(config_path: str | None) -> str:
    return repr(config_path) if config_path else "none"


def _shadowed(
    plain: Mapping[str, Any], table: Path, files: Sequence[ConfigFile], effective: Effective, target: ContainerdTarget
) -> list[str]:
    """What wins over the file's own registry table, by name: a leftover table, or an imported file."""
    where = files[0].path
    own = get_path(plain, table)
    own_path = own.get("config_path") if isinstance(own, Mapping) else None
    own_path = own_path if isinstance(own_path, str) and own_path else None
    out: list[str] = []
    alone = effective_config(files[:1], target.version)
    own_hosts = _auth_kinds(own) if isinstance(own, Mapping) else {}
    own_auth = sorted(h for h in own_hosts if alone.auth(h) != get_path(own, ("configs", h, "auth")))
    lost = [f"config_path {_shown(alone.config_path)}, not {_shown(own_path)}"] if alone.config_path != own_path else []
    lost += [f"not its credentials for {', '.join(own_auth)}"] if own_auth else []
    if reads_leftover(plain, target.version) and lost:
        out.append(
            f"{where}: [{table_label(V2_TABLE)}] is left from version 2 and containerd {target.version} reads it instead of "
            f"[{table_label(table)}] ({'; '.join(lost)}): `nodecfg apply` moves it"
        )
    if effective.config_path != alone.config_path:
        by = first_change(files, target.version, lambda e: e.config_path == effective.config_path)
        out.append(
            f"{by or 'an imported file'}, which {where} imports, overrides its registry settings: containerd "
            f"{target.version} reads config_path {_shown(effective.config_path)}, not {_shown(alone.config_path)}"
        )
    for host in sorted(_auth_kinds(alone.registry)):
        if effective.auth(host) != alone.auth(host):
            by = first_change(files, target.version, lambda e, h=host: e.auth(h) != alone.auth(h))
            out.append(f"{by or 'an imported file'}, which {where} imports, overrides the credentials for {host}")
    return out


def read_registry_settings(
    text: str | None, target: ContainerdTarget, where: str, imported: Sequence[ConfigFile] = ()
) -> RegistrySettings:
    """What containerd `target` takes from config.toml `text` (None: the file does not exist) and the files it imports."""
    problems: list[str] = []
    plain = _parse_settings(text, where, problems)
    table = _settings_table(plain, target, where, problems)
    files = [ConfigFile(where, plain), *imported]
    effective = effective_config(files, target.version)
    if not problems:  # a version the release refuses is said once, above
        problems += effective.problems
    shadowed = _shadowed(plain, table, files, effective, target) if text is not None and not effective.problems else []
    registry = effective.registry
    legacy, legacy_problems = extract_legacy(registry, f"{where}: {table_label(table)}")
    problems += legacy_problems
    raw_path = registry.get("config_path")
    config_path = raw_path if isinstance(raw_path, str) and raw_path else None
    roots, note = _hosts_roots(config_path, legacy, target, f"{where}: {table_label(table)}", problems)
    headers = registry.get("headers")
    return RegistrySettings(
        file=where,
        exists=text is not None,
        table=table_label(table),
        config_path=config_path,
        roots=roots,
        roots_note=note,
        mirrors=dict(legacy.mirrors),
        tls_hosts=tuple(sorted(legacy.tls)),
        auth=_auth_kinds(registry),
        header_names=tuple(sorted(headers)) if isinstance(headers, Mapping) else (),
        problems=tuple(problems),
        version=config_version(plain),
        shadowed=tuple(shadowed),
    )
