"""What containerd reads from config.toml and the files it imports, release by release (pure).

One model of containerd's loader, so that nodecfg never says "applied" while containerd reads
another `config_path` or other credentials. Each release family loads the main file, then its
`imports` breadth-first (each path once; a glob's matches in name order, a list in its order),
and merges them; they differ in how (docs/containerd.md, "What containerd reads: imports and
versions"; every rule below was seen with `config dump` of 1.6.20, 1.7.24, 2.0.11, 2.1.9, 2.3.4
and 2.4.0-beta.0, and tests/e2e/test_effective_config.py holds the model to the binary):

- 1.6, 1.7: a later file replaces each plugin table it names as a whole (a drop-in that sets only
  `sandbox_image` drops the main file's registry table); the merged `version` is the last one
  given; version 1 looks the CRI plugin up as `plugins.cri`, 2 and up as
  `plugins."io.containerd.grpc.v1.cri"`; 1.7 refuses a merged version above 2.
- 2.0-2.2: a version 0/1 file's short plugin names are renamed and it takes the version merged so
  far; files merge key by key; then, only when the merged version is below 3, the CRI migration
  moves `io.containerd.grpc.v1.cri`'s registry table over `io.containerd.cri.v1.images`' as a whole.
- 2.3+: the first file with a version is the reference and no later file may be higher; each file
  below version 4 is migrated on its own (renames, then the CRI migration) before the key-by-key
  merge. So a version 3 file's leftover `io.containerd.grpc.v1.cri` registry table wins again.

The CRI plugin then reads `io.containerd.cri.v1.images`' registry table on 2.x.
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from nodecfg.containerd import versions
from nodecfg.containerd.versions import ContainerdVersion

GRPC_CRI = "io.containerd.grpc.v1.cri"
IMAGES = "io.containerd.cri.v1.images"
SHORT_CRI = "cri"
# The plugin names a version 0/1 file may use for the CRI plugin (containerd's v1Migrate renames them).
_SHORT_NAMES = {SHORT_CRI: GRPC_CRI}


@dataclass(frozen=True)
class ConfigFile:
    """One file containerd loads: the host path and its parsed TOML (None: it does not exist)."""

    path: str
    plain: Mapping[str, Any] | None
    # As read, for a copy containerd can load (None: not kept); what it means is `plain`.
    text: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Effective:
    """What containerd would run with: the CRI registry table after every merge and migration."""

    registry: Mapping[str, Any]
    files: tuple[str, ...]  # the files loaded, in order
    version: int  # the merged `version`
    # Why containerd would not start, or not load the CRI plugin, with these files (empty: it would).
    problems: tuple[str, ...] = field(default=())

    @property
    def config_path(self) -> str | None:
        """The `config_path` CRI reads (None: unset or empty)."""
        value = self.registry.get("config_path")
        return value if isinstance(value, str) and value else None

    def auth(self, host: str) -> Mapping[str, Any] | None:
        """`configs."<host>".auth` as CRI reads it, if there is one."""
        configs = self.registry.get("configs")
        entry = configs.get(host) if isinstance(configs, Mapping) else None
        auth = entry.get("auth") if isinstance(entry, Mapping) else None
        return auth if isinstance(auth, Mapping) else None


def raw_version(plain: Mapping[str, Any]) -> int:
    """A file's `version` as containerd's decoder sees it: 0 when absent."""
    v = plain.get("version", 0)
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def import_patterns(plain: Mapping[str, Any], path: str, release: ContainerdVersion) -> list[str]:
    """The host paths (or glob patterns, with a `*`) a file imports, in its order.

    A relative path is taken from the importing file's directory, except a relative glob on 1.6,
    which containerd globs from its working directory (`/` under systemd).
    """
    raw = plain.get("imports")
    if not isinstance(raw, list):
        return []
    out: list[str] = []
    for item in raw:
        if not isinstance(item, str) or not item:
            continue
        if "*" in item and not item.startswith("/") and release < versions.ContainerdVersion(1, 7, 0):
            out.append(posixpath.normpath(posixpath.join("/", item)))
            continue
        p = posixpath.normpath(item)
        out.append(p if p.startswith("/") else posixpath.normpath(posixpath.join(posixpath.dirname(path), p)))
    return out


def _plugins(tree: dict[str, Any]) -> dict[str, Any]:
    plugins = tree.get("plugins")
    if not isinstance(plugins, dict):
        plugins = {}
        tree["plugins"] = plugins
    return plugins


def _rename_short_plugins(tree: dict[str, Any], where: str) -> list[str]:
    """Rename short plugin names as containerd's v1Migrate does: `plugins.cri` -> `plugins."io.containerd.grpc.v1.cri"`.

    A file that names the CRI plugin both ways is a problem: v1Migrate walks a Go map, so which of
    the two tables survives differs from one start to the next.
    """
    plugins = _plugins(tree)
    problems: list[str] = []
    for short, long in _SHORT_NAMES.items():
        if short in plugins:
            if long in plugins:
                problems.append(
                    f'{where}: a version 1 file with both [plugins.{short}] and [plugins."{long}"]: containerd 2.x '
                    "keeps one of the two at random on each start; merge them into one"
                )
            plugins[long] = plugins.pop(short)
    return problems


def _cri_migrate(tree: dict[str, Any]) -> None:
    """Run the CRI images plugin's migration from a version 2 config.

    The old registry table replaces `io.containerd.cri.v1.images`' as a whole (and leaves the old plugin).
    """
    plugins = _plugins(tree)
    old = plugins.get(GRPC_CRI)
    if not isinstance(old, dict) or "registry" not in old:
        return
    images = plugins.get(IMAGES)
    if not isinstance(images, dict):
        images = {}
        plugins[IMAGES] = images
    images["registry"] = old.pop("registry")


def _deep_merge(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
    """2.x's merge: tables key by key, every other value (strings, arrays, "") replaced."""
    for key, value in src.items():
        if isinstance(value, Mapping) and isinstance(dst.get(key), dict):
            _deep_merge(dst[key], value)
        else:
            dst[key] = copy.deepcopy(value)


def _merge_1x(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
    """1.x's merge: top-level values replaced, and each plugin table a file names replaced whole."""
    for key, value in src.items():
        if key == "plugins" and isinstance(value, Mapping):
            plugins = _plugins(dst)
            for name, table in value.items():
                plugins[name] = copy.deepcopy(table)
        elif key != "version":
            dst[key] = copy.deepcopy(value)


def _registry_at(tree: Mapping[str, Any], plugin: str) -> Mapping[str, Any]:
    plugins = tree.get("plugins")
    table = plugins.get(plugin) if isinstance(plugins, Mapping) else None
    registry = table.get("registry") if isinstance(table, Mapping) else None
    return registry if isinstance(registry, Mapping) else {}


def _missing(f: ConfigFile) -> str:
    return f"{f.path}: imported but does not exist: containerd refuses to start (failed to load TOML)"


def _load_1x(files: Sequence[ConfigFile], release: ContainerdVersion) -> Effective:
    tree: dict[str, Any] = {}
    version = 1
    loaded: list[str] = []
    for f in files:
        if f.plain is None:
            return Effective({}, tuple(loaded), version, (_missing(f),))
        loaded.append(f.path)
        _merge_1x(tree, f.plain)
        version = raw_version(f.plain) or version
    where = loaded[-1] if loaded else "config.toml"
    if version > 2 and release >= versions.ContainerdVersion(1, 7, 0):
        return Effective(
            {}, tuple(loaded), version, (f"{where}: containerd {release} refuses config version {version} (the max is 2)",)
        )
    plugins = tree.get("plugins")
    plugins = plugins if isinstance(plugins, Mapping) else {}
    if version < 2:
        return Effective(_registry_at(tree, SHORT_CRI), tuple(loaded), version)
    short = sorted(k for k in plugins if "." not in k)
    if short:
        return Effective(
            {},
            tuple(loaded),
            version,
            (f'{where}: containerd {release} refuses plugin key "{short[0]}" in a version {version} config',),
        )
    return Effective(_registry_at(tree, GRPC_CRI), tuple(loaded), version)


def _load_2x(files: Sequence[ConfigFile], release: ContainerdVersion) -> Effective:
    per_file = release >= versions.CONFIG_V4  # 2.3+ migrates each file before merging
    highest = 4 if per_file else 3
    tree: dict[str, Any] = {}
    version = highest  # containerd's default config carries the current version
    reference = 0
    loaded: list[str] = []
    problems: list[str] = []
    for f in files:
        if f.plain is None:
            # `config dump` stops here without a word; the daemon refuses to start.
            problems.append(_missing(f))
            break
        one = copy.deepcopy(dict(f.plain))
        v = raw_version(one)
        if per_file:
            reference = reference or v
            if v > reference:
                return Effective(
                    {},
                    tuple(loaded),
                    version,
                    (
                        f"{f.path}: drop-in config version {v} higher than root config version {reference}: containerd refuses to start",
                    ),
                )
            if v < highest:
                if v <= 1:
                    problems += _rename_short_plugins(one, f.path)
                _cri_migrate(one)
                v = highest
        elif v <= 1:
            problems += _rename_short_plugins(one, f.path)
            v = version
        loaded.append(f.path)
        one.pop("version", None)
        _deep_merge(tree, one)
        version = v or version
    if version > highest:
        return Effective(
            {},
            tuple(loaded),
            version,
            (f"{loaded[-1]}: containerd {release} refuses config version {version} (the max is {highest})",),
        )
    if version < 3:
        _cri_migrate(tree)
    return Effective(_registry_at(tree, IMAGES), tuple(loaded), version, tuple(problems))


SERVER_GRPC = "io.containerd.server.v1.grpc"


def grpc_address(files: Sequence[ConfigFile]) -> str | None:
    """The socket containerd listens on, as its files set it (None: containerd's default).

    Version 4 (2.3+) moved `[grpc]` into the `io.containerd.server.v1.grpc` plugin; older
    versions keep the top-level table, which 2.3+ migrate into it. A later file wins.
    """
    address: str | None = None
    for f in files:
        if f.plain is None:
            break
        if raw_version(f.plain) >= 4:
            plugins = f.plain.get("plugins")
            table = plugins.get(SERVER_GRPC) if isinstance(plugins, Mapping) else None
        else:
            table = f.plain.get("grpc")
        value = table.get("address") if isinstance(table, Mapping) else None
        if isinstance(value, str) and value:
            address = value
    return address


def _import_problems(f: ConfigFile) -> list[str]:
    """`imports` that containerd cannot decode or open: not a list of non-empty strings."""
    raw = f.plain.get("imports") if f.plain is not None else None
    if raw is None:
        return []
    if not isinstance(raw, list):
        return [f"{f.path}: imports is a {type(raw).__name__}, not a list of paths: containerd refuses to start"]
    bad = [i for i, item in enumerate(raw) if not isinstance(item, str) or not item]
    if bad:
        return [
            f"{f.path}: imports entry {bad[0] + 1} is not a path (an empty string or another type): containerd refuses to start"
        ]
    return []


def effective_config(files: Sequence[ConfigFile], release: ContainerdVersion) -> Effective:
    """The registry settings containerd `release` runs with, from its files in load order.

    The main config.toml first, then what it imports, breadth-first, each path once.
    """
    result = _load_1x(files, release) if release < versions.CONFIG_V3 else _load_2x(files, release)
    bad = [p for f in files for p in _import_problems(f)]
    return replace(result, problems=(*bad, *result.problems)) if bad else result


def first_change(files: Sequence[ConfigFile], release: ContainerdVersion, differs: Any) -> str | None:
    """The first file after which `differs(effective)` holds, where the files before it gave something else.

    That is the file that shadows (None: none does, or already the first file gives it).
    """
    if not files or differs(effective_config(files[:1], release)):
        return None
    for n in range(2, len(files) + 1):
        if differs(effective_config(files[:n], release)):
            return files[n - 1].path
    return None
