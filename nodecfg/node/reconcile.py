"""One reconcile: read the node and the input, render and plan (pure), and apply if asked."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass

from nodecfg.containerd.config_toml import effective_target
from nodecfg.containerd.effective import ConfigFile
from nodecfg.containerd.versions import ContainerdTarget, VersionSource
from nodecfg.node.apply import apply_plan, recover
from nodecfg.node.config_files import imported_files
from nodecfg.node.containerd import DumpCheck, check_loaded, detect_target, find_binary
from nodecfg.node.fs import list_dir, read_file
from nodecfg.node.inputs import gather_materials, read_input
from nodecfg.node.paths import ETC_HOSTS, NodePaths
from nodecfg.node.state import State, load_state
from nodecfg.plan import CurrentFile, Plan, make_plan
from nodecfg.plan.redaction import redact
from nodecfg.render import Layout, Rendered, render
from nodecfg.render.files import FileKind
from nodecfg.spec.loader import load_input
from nodecfg.spec.models import Config


@dataclass(frozen=True)
class Prepared:
    """Everything a diff or an apply needs, computed without changing the node."""

    config: Config
    rendered: Rendered
    plan: Plan
    current: Mapping[str, CurrentFile]
    state: State
    paths: NodePaths
    input_format: str = "nodecfg"
    input_warnings: tuple[str, ...] = ()
    imported: tuple[ConfigFile, ...] = ()  # the files config.toml imports, in containerd's order


def _current(paths: NodePaths, host_paths: set[str]) -> dict[str, CurrentFile]:
    out = {}
    for p in sorted(host_paths):
        info = read_file(paths.real(p))
        out[p] = CurrentFile(info.content, info.mode)
    return out


def _imported(paths: NodePaths, current_config: str | None, target: ContainerdTarget) -> list[ConfigFile]:
    """The files config.toml imports, as containerd finds them (none when it does not parse: render says why)."""
    try:
        plain = tomllib.loads(current_config or "")
    except tomllib.TOMLDecodeError:
        return []
    return imported_files(paths, plain, effective_target(target, current_config or "").version)


def prepare(
    paths: NodePaths,
    config_path: str,
    containerd_version: str | None,
    env: Mapping[str, str] | None = None,
    target: ContainerdTarget | None = None,
    *,
    input_format: str = "auto",
    sick: Mapping[str, frozenset[str]] | None = None,
) -> Prepared:
    """Read input and node, render and plan. Raises SpecError, ConfigError or NodeError.

    `sick`: mirror URLs to leave out of hosts.toml, by registry (the daemon's health checks).
    `target`: the containerd already detected (the daemon detects it once per resync, not on
    every change: running the binary costs tens of milliseconds).
    """
    loaded = load_input(read_input(config_path), config_path, input_format)
    config = loaded.config
    materials = gather_materials(config, config_path, env)
    state = load_state(paths.real(paths.state_dir))
    target = target or detect_target(paths, containerd_version, state)
    config_info = read_file(paths.real(paths.containerd_config))
    current_config = None if config_info.content is None else config_info.content.decode("utf-8", errors="strict")
    imported = _imported(paths, current_config, target)
    # Read even without hostAliases: a block left from an earlier input is removed.
    hosts_info = read_file(paths.real(ETC_HOSTS))
    current_hosts = None if hosts_info.content is None else hosts_info.content.decode("utf-8", "strict")
    rendered = render(
        config,
        materials,
        layout=Layout(hosts_dir=paths.hosts_dir, containerd_config=paths.containerd_config, etc_hosts=ETC_HOSTS),
        target=target,
        current_config=current_config,
        state_legacy=state.legacy,
        owned_auth_hosts=state.auth_hosts,
        current_etc_hosts=current_hosts,
        sick=sick,
        imported=imported,
    )
    current = _current(paths, {f.path for f in rendered.files} | set(state.owned))
    entries = list_dir(paths.real(paths.hosts_dir))
    plan = make_plan(rendered, current, state.owned, entries)
    return Prepared(config, rendered, plan, current, state, paths, loaded.format, loaded.warnings, tuple(imported))


def apply(prepared: Prepared) -> State:
    """Write the plan to the node (journaled); returns the new state."""
    target = prepared.rendered.target
    return apply_plan(
        prepared.plan,
        prepared.paths,
        prepared.state,
        auth_hosts=prepared.rendered.config.auth_hosts,
        legacy=prepared.rendered.config.legacy,
        containerd="" if target.source is VersionSource.ASSUMED else str(target.version),
    )


def recover_node(paths: NodePaths) -> str | None:
    """Finish or clean up an interrupted apply before anything else reads the node."""
    return recover(paths, [paths.hosts_dir, os.path.dirname(paths.containerd_config)])


def check_effective(prepared: Prepared) -> DumpCheck:
    """The effective-config check: the config.toml nodecfg wants, loaded by the node's own containerd.

    `containerd config dump` of the desired file with the files it imports (resolved under the
    root), checked for nodecfg's `config_path` and credentials where that release reads them.
    Where the binary does not run here, `ran` is False and render's model check is what stands.
    Problems are redacted.
    """
    paths = prepared.paths
    desired = next((f for f in prepared.rendered.files if f.kind is FileKind.CONTAINERD_CONFIG), None)
    if desired is None:
        return DumpCheck(False, (), "no config.toml rendered")
    binary = find_binary(paths.root, paths.real(paths.containerd_socket))
    check = check_loaded(binary, desired.content.decode("utf-8"), prepared.imported, paths, prepared.rendered.config.auth_hosts)
    return DumpCheck(check.ran, tuple(redact(p, prepared.rendered.secrets) for p in check.problems), check.note)
