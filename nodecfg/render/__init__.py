"""Render (pure): the input plus what it refers to -> the files nodecfg wants on the node."""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from nodecfg.containerd import names
from nodecfg.containerd import paths as containerd_paths
from nodecfg.containerd.config_toml import effective_target
from nodecfg.containerd.effective import ConfigFile
from nodecfg.containerd.errors import ConfigError
from nodecfg.containerd.legacy import Legacy, endpoint_to_mirror
from nodecfg.containerd.versions import ContainerdTarget, VersionSource, supports_default_namespace
from nodecfg.render.config_edit import ConfigEdit, edit_containerd_config
from nodecfg.render.config_effect import shadowing_problems
from nodecfg.render.credentials import ResolvedAuth, resolve_credentials
from nodecfg.render.etc_hosts import ETC_HOSTS, HostsFileError, edit_hosts_file
from nodecfg.render.files import DesiredFile, FileKind
from nodecfg.render.hosts import MirrorEndpoint, RenderedHosts, render_hosts
from nodecfg.render.materials import Materials
from nodecfg.spec.models import Config, Registry
from nodecfg.spec.secrets import is_secret_header, secret_values

__all__ = ["Layout", "Rendered", "render"]


@dataclass(frozen=True)
class Layout:
    """Where containerd's files are, as containerd sees them on the host."""

    hosts_dir: str = containerd_paths.HOSTS_DIR
    containerd_config: str = containerd_paths.CONFIG_TOML
    etc_hosts: str = ETC_HOSTS


@dataclass(frozen=True)
class Rendered:
    """Everything nodecfg wants on the node, and what it learned rendering it."""

    files: tuple[DesiredFile, ...]
    config: ConfigEdit
    target: ContainerdTarget
    warnings: tuple[str, ...]
    secrets: frozenset[str]
    endpoints: tuple[MirrorEndpoint, ...] = ()  # every mirror rendered, in rotation or not
    routed_out: tuple[tuple[str, str], ...] = ()  # (registry, mirror URL) left out as sick
    # What the input renders to with every mirror in rotation: the input's identity (a rolled-back
    # input stays recognised while mirrors go in and out of rotation).
    unrouted_files: tuple[DesiredFile, ...] = ()


def _legacy_registries(legacy: Legacy, where: str, problems: list[str], warnings: list[str]) -> dict[str, Registry]:
    out: dict[str, Registry] = {}
    for key, endpoints in sorted(legacy.mirrors.items()):
        loc = f"{where}: mirrors.{key!r}"
        try:
            names.check_registry_key(key)
        except names.NameError_ as e:
            warnings.append(f"{loc}: dropped, containerd never used it: {e}")
            continue
        upstream = None if key == names.WILDCARD else names.default_upstream(key)
        mirrors: list[dict[str, object]] = []
        plain = False
        for endpoint in endpoints:
            url, override = endpoint_to_mirror(endpoint)
            if upstream is not None and url.split("://", 1)[1].split("/", 1)[0] == upstream:
                plain = url.startswith("http://")
                if endpoint != endpoints[-1]:
                    warnings.append(f"{loc}: endpoints after the registry itself ({endpoint}) are tried before it now")
                continue
            mirrors.append({"url": url, "overridePath": override})
        try:
            out[key] = Registry.model_validate({"mirrors": mirrors, "plainHTTP": plain})
        except ValidationError as e:
            problems.append(f"{loc}: cannot be moved to hosts.toml: {e.errors()[0]['msg']}")
    return out


def _secrets(config: Config, auth_secrets: list[str], config_texts: tuple[str, ...]) -> frozenset[str]:
    """Every secret an output could show: the input's, and those config.toml holds before and after.

    The node's own credentials (written by hand or by another tool) are included, so a message or
    diff that quotes config.toml hides them too.
    """
    out = set(auth_secrets)
    for reg in config.registries.values():
        for ep in (reg, *reg.mirrors):
            for name, values in ep.headers.items():
                if is_secret_header(name):
                    out.update(values)
    for text in config_texts:
        with contextlib.suppress(tomllib.TOMLDecodeError):  # an unparsable file was refused above
            out |= secret_values(tomllib.loads(text))
    return frozenset(out)


def _edit_config(
    current_config: str | None,
    *,
    layout: Layout,
    auths: Mapping[str, ResolvedAuth],
    owned_auth_hosts: frozenset[str],
    target: ContainerdTarget,
    problems: list[str],
) -> ConfigEdit:
    """The edited config.toml; when it cannot be edited, ConfigError with every problem found so far."""
    try:
        return edit_containerd_config(
            current_config or "",
            where=layout.containerd_config,
            hosts_dir=layout.hosts_dir,
            auths={h: a.auth for h, a in auths.items()},
            owned_auth_hosts=owned_auth_hosts,
            target=target.version,
        )
    except ConfigError as e:
        raise ConfigError(problems + e.problems) from None


def _registries(config: Config, legacy: Legacy, where: str, problems: list[str], warnings: list[str]) -> dict[str, Registry]:
    """The registries to render: the input's, plus those legacy mirrors and TLS settings moved out of config.toml."""
    registries: dict[str, Registry] = {}
    for key, reg in _legacy_registries(legacy, where, problems, warnings).items():
        if key in config.registries:
            warnings.append(f"{where}: legacy mirrors for {key} are replaced by registries.{key!r} of the input")
        else:
            registries[key] = reg
    registries.update(config.registries)
    mirror_hosts = {m.authority() for r in registries.values() for m in r.mirrors}
    for host in sorted(legacy.tls):
        if host not in registries and host not in mirror_hosts:
            registries[host] = Registry()
    return registries


def _wildcard_warnings(registries: Mapping[str, Registry], target: ContainerdTarget) -> list[str]:
    """What `*` does not do: on a release without `_default`, and for registries with their own entry."""
    wildcard = registries.get(names.WILDCARD)
    if wildcard is None:
        return []
    out: list[str] = []
    if target.source is not VersionSource.ASSUMED and not supports_default_namespace(target.version):
        out.append(f"registries.'*': {target.describe()} does not read _default (needs 1.6.17 or 1.7.0)")
    if wildcard.mirrors:
        for key in sorted(k for k in registries if k != names.WILDCARD):
            out.append(
                f"registries.{key!r}: has its own entry, so the mirrors of '*' do not apply to it "
                "(containerd reads one hosts directory per registry)"
            )
    return out


def _hosts(
    registries: Mapping[str, Registry],
    materials: Materials,
    *,
    layout: Layout,
    target: ContainerdTarget,
    legacy: Legacy,
    sick: Mapping[str, frozenset[str]] | None,
    problems: list[str],
) -> tuple[RenderedHosts, list[DesiredFile] | None]:
    """The hosts.toml files with sick mirrors left out, and (only when some are) the files with every mirror in."""
    hosts = RenderedHosts([], [], [], [])
    unrouted: list[DesiredFile] | None = None
    try:
        hosts = render_hosts(
            registries, hosts_dir=layout.hosts_dir, materials=materials, target=target.version, legacy_tls=legacy.tls, sick=sick
        )
        if hosts.routed_out:
            unrouted = render_hosts(
                registries, hosts_dir=layout.hosts_dir, materials=materials, target=target.version, legacy_tls=legacy.tls
            ).files
    except ConfigError as e:
        problems += e.problems
    return hosts, unrouted


def _etc_hosts(current_etc_hosts: str | None, config: Config, layout: Layout) -> list[DesiredFile]:
    """/etc/hosts with the input's aliases in nodecfg's block, when it is to change."""
    try:
        etc_hosts = edit_hosts_file(current_etc_hosts, config.hostAliases)
    except HostsFileError as e:
        raise ConfigError([str(e)]) from None
    return [] if etc_hosts is None else [DesiredFile(layout.etc_hosts, etc_hosts.encode(), None, FileKind.ETC_HOSTS)]


def render(
    config: Config,
    materials: Materials,
    *,
    layout: Layout,
    target: ContainerdTarget,
    current_config: str | None,
    state_legacy: Legacy,
    owned_auth_hosts: frozenset[str],
    current_etc_hosts: str | None = None,
    sick: Mapping[str, frozenset[str]] | None = None,
    imported: Sequence[ConfigFile] = (),
) -> Rendered:
    """Render hosts.toml files, cert files and the edited config.toml; ConfigError lists problems.

    `imported`: the files config.toml imports, in containerd's order; the edit must still be what
    containerd reads once they are merged in, or nothing is rendered.
    """
    where = layout.containerd_config
    target = effective_target(target, current_config or "")
    problems: list[str] = []
    warnings: list[str] = [target.warning] if target.warning else []
    auths, cred_problems, cred_warnings = resolve_credentials(config, materials)
    problems += cred_problems
    warnings += cred_warnings
    edit = _edit_config(
        current_config, layout=layout, auths=auths, owned_auth_hosts=owned_auth_hosts, target=target, problems=problems
    )
    warnings += edit.warnings
    problems += shadowing_problems(edit, imported, target.version, where)
    legacy = state_legacy.merged(edit.legacy)
    if edit.legacy:
        warnings.append(
            f"{where}: legacy registry settings moved to hosts.toml ({', '.join([*edit.legacy.mirrors, *edit.legacy.tls])}): containerd refuses them next to config_path"
        )
    registries = _registries(config, legacy, where, problems, warnings)
    warnings += _wildcard_warnings(registries, target)
    hosts, unrouted = _hosts(registries, materials, layout=layout, target=target, legacy=legacy, sick=sick, problems=problems)
    warnings += hosts.warnings
    if problems:
        raise ConfigError(problems)
    config_file = DesiredFile(
        layout.containerd_config, edit.text.encode(), 0o600 if edit.holds_credentials else None, FileKind.CONTAINERD_CONFIG
    )
    etc_hosts = _etc_hosts(current_etc_hosts, config, layout)
    secrets = _secrets(config, [s for a in auths.values() for s in a.auth.secrets()], (current_config or "", edit.text))
    secrets |= frozenset(v for f in imported if f.plain is not None for v in secret_values(f.plain))
    edit = ConfigEdit(edit.text, edit.registry_table, edit.holds_credentials, legacy, edit.auth_hosts, edit.warnings)
    routed = (*hosts.files, *etc_hosts, config_file)
    return Rendered(
        routed,
        edit,
        target,
        tuple(warnings),
        secrets,
        tuple(hosts.endpoints),
        tuple(hosts.routed_out),
        routed if unrouted is None else (*unrouted, *etc_hosts, config_file),
    )
