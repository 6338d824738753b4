"""Read what `explain` and `doctor` look at on the node: config.toml, hosts directories, cert files."""

from __future__ import annotations

import os
import posixpath
import tomllib
from dataclasses import replace

from nodecfg.containerd.config_toml import read_registry_settings
from nodecfg.containerd.effective import ConfigFile
from nodecfg.containerd.hosts_toml import entries_reading_files
from nodecfg.containerd.versions import ContainerdTarget
from nodecfg.node.config_files import imported_files
from nodecfg.node.fs import NodeError, list_dir, read_file
from nodecfg.node.paths import NodePaths
from nodecfg.oncall.view import HostsDir, NodeView
from nodecfg.render.hosts import is_owned_hosts_toml
from nodecfg.spec.models import PEM_CERT_MARK

MAX_HOSTS_TOML = 1024 * 1024
_CERT_SUFFIXES = (".crt", ".cert", ".key")


def _read_text(real: str) -> tuple[str | None, str | None]:
    try:
        info = read_file(real, limit=MAX_HOSTS_TOML)
    except NodeError as e:
        return None, str(e).split(": ", 1)[-1]
    if info.content is None:
        return None, None
    try:
        return info.content.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 text (byte {e.start})"


def _file_problem(paths: NodePaths, host: str, want_cert: bool) -> str | None:
    """Why containerd could not use a referenced PEM file, or None."""
    try:
        info = read_file(paths.real(host), limit=MAX_HOSTS_TOML)
    except NodeError as e:
        return str(e).split(": ", 1)[-1]
    if info.content is None:
        return "no such file"
    if want_cert and PEM_CERT_MARK.encode() not in info.content:
        return "holds no PEM certificate"
    return None


def _imported(paths: NodePaths, config_text: str | None, target: ContainerdTarget) -> list[ConfigFile]:
    """The files config.toml imports (none when it does not parse: the settings say why)."""
    try:
        plain = tomllib.loads(config_text or "")
    except tomllib.TOMLDecodeError:
        return []
    return imported_files(paths, plain, target.version)


def read_node_view(paths: NodePaths, target: ContainerdTarget) -> NodeView:
    """Everything under every config_path root, owned by nodecfg or not."""
    config_text, error = _read_text(paths.real(paths.containerd_config))
    if error is not None:
        raise NodeError(f"read {paths.containerd_config}: {error}")
    unreadable: tuple[str, ...] = ()
    try:
        imported = _imported(paths, config_text, target)
    except NodeError as e:  # a drop-in nodecfg cannot read: containerd cannot either; doctor says which
        imported, unreadable = [], (f"{e}: containerd refuses to start with it",)
    settings = read_registry_settings(config_text, target, paths.containerd_config, imported)
    if unreadable:
        settings = replace(settings, problems=(*settings.problems, *unreadable))
    dirs: dict[str, HostsDir] = {}
    missing: dict[str, str] = {}
    for root in settings.roots:
        real_root = paths.real(root)
        # list_dir: an apply or uninstall may remove a directory while this reads (no lock).
        for name in sorted(list_dir(real_root)):
            d = posixpath.join(root, name)
            real = os.path.join(real_root, name)
            if not os.path.isdir(real):
                continue
            text, err = _read_text(os.path.join(real, "hosts.toml"))
            certs = tuple(sorted(f for f in list_dir(real) if f.endswith(_CERT_SUFFIXES)))
            dirs[d] = HostsDir(d, text, err, certs, text is not None and is_owned_hosts_toml(text.encode()))
            if text is None:
                continue
            for entry in entries_reading_files(text, directory=d, target=target.version):
                for ca in entry.ca:
                    problem = _file_problem(paths, ca, want_cert=True)
                    if problem:
                        missing[ca] = problem
                for cert, key in entry.client:
                    for p, is_cert in ((cert, True), (key, False)):
                        problem = _file_problem(paths, p, want_cert=is_cert) if p else None
                        if problem:
                            missing[p] = problem
    return NodeView(target, settings, dirs, missing)
