"""`doctor` findings that follow from the node's files alone (pure): config.toml and hosts.toml.

The node layer adds what needs the live system (the binary, CRI health, permissions, the network).
Every finding says what is wrong, where, and how to fix it.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from enum import Enum
from typing import Any

from nodecfg.containerd import names, versions
from nodecfg.containerd.hosts_toml import HostEntry, HostsFile, entries_reading_files, parse_hosts_file, tries_https_first
from nodecfg.containerd.names import candidate_dirs
from nodecfg.oncall.view import HostsDir, NodeView
from nodecfg.spec.secrets import is_secret_header


class Status(str, Enum):
    """How a check came out; FAIL makes `doctor` exit 1."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    id: str  # stable, for scripts: e.g. "hosts.refused"
    status: Status
    title: str
    detail: str = ""
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"id": self.id, "status": self.status.value, "title": self.title, "detail": self.detail, "fix": self.fix}


_SHADOW_FIX = (
    "`nodecfg apply` moves a leftover table; for an imported file, move its registry settings into "
    "config.toml (or make them the same), then run `nodecfg apply` and restart containerd"
)


def config_checks(view: NodeView, hosts_dir: str) -> list[Check]:
    """config.toml: version and registry table, config_path, the legacy conflicts."""
    s = view.registry
    out: list[Check] = []
    if not s.exists:
        out.append(
            Check(
                "config.exists", Status.WARN, f"{s.file} does not exist", "containerd runs on its defaults", "run `nodecfg apply`"
            )
        )
    else:
        out.append(Check("config.table", Status.OK, f"{s.file}: version {s.version}, registry settings in [{s.table}]"))
    for problem in s.problems:
        out.append(
            Check(
                "config.invalid",
                Status.FAIL,
                "config.toml makes the CRI plugin fail or ignore the registry settings",
                problem,
                "remove `mirrors` and `configs.*.tls` from config.toml (`nodecfg apply` moves them into hosts.toml)",
            )
        )
    out += [
        Check(
            "config.shadowed",
            Status.FAIL,
            "containerd does not read config.toml's registry table as written",
            shadow,
            _SHADOW_FIX,
        )
        for shadow in s.shadowed
    ]
    out.append(_config_path_check(view, hosts_dir))
    return out


def _config_path_check(view: NodeView, hosts_dir: str) -> Check:
    """Whether the config_path containerd reads (after imports and migration) holds nodecfg's hosts directory."""
    s = view.registry
    if s.config_path is None:
        status = Status.WARN if s.roots else Status.FAIL
        return Check(
            "config.config_path",
            status,
            "config_path is not set",
            s.roots_note,
            f"set config_path = {hosts_dir!r} (`nodecfg apply` does) and restart containerd",
        )
    if hosts_dir not in s.roots:
        return Check(
            "config.config_path",
            Status.FAIL,
            f"config_path does not include {hosts_dir}, where nodecfg writes",
            s.roots_note,
            f"set config_path = {hosts_dir!r} and restart containerd, or pass --hosts-dir {s.roots[0]}",
        )
    if len(s.roots) > 1:
        transfer = view.target.version >= versions.TRANSFER_PULL
        return Check(
            "config.config_path",
            Status.WARN if transfer else Status.OK,
            f"config_path is a list: {s.config_path}",
            "containerd >= 2.1 pulling through the transfer service reads a list as one directory (containerd#12415)"
            if transfer
            else "the first root with a matching directory wins",
            f"use a single directory ({hosts_dir})" if transfer else "",
        )
    return Check("config.config_path", Status.OK, f"config_path = {s.config_path!r}")


def _https_first_detail(target: versions.ContainerdVersion, tls_on_http: list[HostEntry]) -> str:
    """What containerd `target` does with TLS options on http:// endpoints (it depends on release and port)."""
    first = [e.url for e in tls_on_http if tries_https_first(target, e.host)]
    if len(first) == len(tls_on_http):
        return f"containerd {target} tries HTTPS first and may report a TLS error (containerd#11647)"
    if not first:
        return (
            f"containerd {target} keeps them on plain HTTP here; which endpoints HTTPS is tried first for "
            "depends on the release and the port (containerd#11647; docs/containerd.md, ## hosts.toml)"
        )
    return f"containerd {target} tries HTTPS first for {', '.join(first)} and may report a TLS error (containerd#11647)"


def endpoints_by_dir(view: NodeView) -> dict[str, tuple[HostEntry, ...]]:
    """Every endpoint of every accepted hosts.toml, by directory (for the network probes)."""
    out: dict[str, tuple[HostEntry, ...]] = {}
    for path, d in sorted(view.dirs.items()):
        ns = names.namespace_of_dir(posixpath.basename(path))
        if ns is None or d.hosts_toml is None or not d.hosts_toml.strip():
            continue
        parsed = parse_hosts_file(d.hosts_toml, namespace=ns, directory=path, target=view.target.version)
        if not parsed.rejected:
            out[path] = parsed.entries
    return out


def private_keys(view: NodeView) -> list[str]:
    """Every key file a used hosts.toml names (a client pair's key, or a combined cert+key file)."""
    keys: set[str] = set()
    for path, d in view.dirs.items():
        if d.hosts_toml is None or names.namespace_of_dir(posixpath.basename(path)) is None:
            continue
        for e in entries_reading_files(d.hosts_toml, directory=path, target=view.target.version):
            keys.update(k or c for c, k in e.client)
    return sorted(keys)


def secret_header_files(view: NodeView) -> dict[str, tuple[str, ...]]:
    """Every hosts.toml that sends a credential-bearing header (Authorization, Cookie, ...), with those names.

    Any directory, used or not: the file's permissions matter wherever it is.
    """
    out: dict[str, tuple[str, ...]] = {}
    for path, d in sorted(view.dirs.items()):
        if d.hosts_toml is None:
            continue
        entries = entries_reading_files(d.hosts_toml, directory=path, target=view.target.version)
        secret = sorted({n for e in entries for n in e.header_names if is_secret_header(n)}, key=str.lower)
        if secret:
            out[posixpath.join(path, "hosts.toml")] = tuple(secret)
    return out


def hosts_checks(view: NodeView) -> list[Check]:
    """Each directory under each config_path root: is it looked up, is its hosts.toml accepted."""
    out: list[Check] = []
    if not view.dirs:
        out.append(Check("hosts.none", Status.OK, "no hosts directories under config_path"))
    for path, d in sorted(view.dirs.items()):
        out += _dir_checks(view, path, d)
    return out


def _dir_checks(view: NodeView, path: str, d: HostsDir) -> list[Check]:
    """One directory: a directory containerd never looks up says only that; else its lookup and its file."""
    name = posixpath.basename(path)
    ns = names.namespace_of_dir(name)
    if ns is None:
        return [
            Check(
                "hosts.unused_dir",
                Status.WARN,
                f"{path}: never looked up",
                f"{name!r} is not a registry host[:port] as image references write it",
                "rename it to the registry part of the image references (e.g. docker.io, reg.example:5000)",
            )
        ]
    if name in names.DOCKER_HUB_ALIASES:
        return [
            Check(
                "hosts.unused_dir",
                Status.WARN,
                f"{path}: never looked up",
                "Docker Hub images are looked up under docker.io",
                f"move it to {posixpath.join(posixpath.dirname(path), names.DOCKER_HUB)}",
            )
        ]
    return [*_lookup_checks(view, path, name, ns), *_file_checks(view, path, d, ns)]


def _lookup_checks(view: NodeView, path: str, name: str, ns: str) -> list[Check]:
    """A `_default` the release does not read, and a `host:port` directory its `host_port_` twin hides."""
    target = view.target.version
    out: list[Check] = []
    if name == names.DEFAULT_DIR and not versions.supports_default_namespace(target):
        out.append(
            Check(
                "hosts.default_unsupported",
                Status.FAIL,
                f"{path}: containerd {target} has no _default",
                "it arrived in 1.6.17 and 1.7.0 (containerd#8053)",
                "upgrade containerd, or give each registry its own directory",
            )
        )
    if ns != names.WILDCARD and ":" in ns and name == ns:
        shadow = candidate_dirs(ns)[0]
        if posixpath.join(posixpath.dirname(path), shadow) in view.dirs:
            out.append(
                Check(
                    "hosts.shadowed",
                    Status.WARN,
                    f"{path}: never used",
                    f"{shadow} in the same directory is looked up first",
                    "keep one of the two directories",
                )
            )
    return out


def _file_checks(view: NodeView, path: str, d: HostsDir, ns: str) -> list[Check]:
    """The directory's hosts.toml: unreadable, absent or empty, refused, or used (and then how well)."""
    file = posixpath.join(path, "hosts.toml")
    if d.error is not None:
        return [Check("hosts.unreadable", Status.FAIL, f"{file}: cannot be read", d.error, "fix its permissions")]
    if d.hosts_toml is None or not d.hosts_toml.strip():
        what = "empty hosts.toml" if d.hosts_toml is not None else "no hosts.toml"
        return [
            Check(
                "hosts.docker_layout",
                Status.WARN,
                f"{path}: {what}",
                f"containerd uses only Docker-style cert files here ({', '.join(d.cert_files) or 'none'}) for the registry itself",
                "write a hosts.toml, or remove the directory",
            )
        ]
    target = view.target.version
    parsed = parse_hosts_file(d.hosts_toml, namespace=ns, directory=path, target=target)
    if parsed.rejected:
        return [
            Check(
                "hosts.refused",
                Status.FAIL,
                f"{file}: containerd {target} ignores this file",
                "; ".join(parsed.rejected),
                "fix the file (containerd logs only 'failed to decode hosts.toml' and pulls from the registry itself)"
                + ("; add an empty [host] table" if any("[host]" in r for r in parsed.rejected) else ""),
            )
        ]
    out = _used_file_problems(view, path, d.hosts_toml, parsed)
    if not out:
        owner = "written by nodecfg" if d.owned else "not written by nodecfg"
        what = (
            "used for every registry without a directory of its own"
            if ns == names.WILDCARD
            else f"{len(parsed.entries)} endpoint(s)"
        )
        out.append(Check("hosts.ok", Status.OK, f"{file}: {what} ({owner})"))
    return out


def _used_file_problems(view: NodeView, path: str, hosts_toml: str, parsed: HostsFile) -> list[Check]:
    """What goes wrong with a hosts.toml containerd accepts: files it cannot read, TLS on plain HTTP."""
    target = view.target.version
    file = posixpath.join(path, "hosts.toml")
    out: list[Check] = []
    reading = entries_reading_files(hosts_toml, directory=path, target=target)
    problems = [f"{p}: {view.missing[p]}" for e in reading for p in e.files() if p in view.missing]
    if problems:
        out.append(
            Check(
                "hosts.files",
                Status.FAIL,
                f"{file}: every pull from this registry fails",
                "containerd cannot use " + "; ".join(problems),
                "restore the files, or take them out of hosts.toml",
            )
        )
    tls_on_http = [e for e in parsed.entries if e.scheme == "http" and e.has_tls_options()]
    if tls_on_http:
        out.append(
            Check(
                "hosts.http_tls",
                Status.WARN,
                f"{file}: TLS options on plain-HTTP endpoint(s) {', '.join(e.url for e in tls_on_http)}",
                _https_first_detail(target, tls_on_http),
                "remove ca/client/skip_verify from http:// endpoints",
            )
        )
    return out
