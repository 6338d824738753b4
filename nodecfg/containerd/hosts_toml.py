"""Read a hosts.toml the way containerd reads it (docs/containerd.md, ## hosts.toml), for any file.

Pure. Used to check what nodecfg renders, and by `explain` and `doctor` to read whatever is on the
node (owned or not): which endpoints containerd derives from the file, in which order, with which
capabilities and TLS files, and whether containerd would refuse the file altogether (it then logs
"failed to decode hosts.toml" and pulls from the upstream as if the file were not there).
"""

from __future__ import annotations

import ipaddress
import posixpath
import tomllib
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from nodecfg.containerd import names, versions
from nodecfg.containerd.durations import DurationError, parse_duration
from nodecfg.containerd.versions import ContainerdVersion

ALL_CAPABILITIES = ("pull", "resolve", "push")
ROOT_ONLY_PARSES = ContainerdVersion(1, 7, 32)  # first 1.x that accepts a file without [host]
# Stands for "whichever registry is pulled": the implicit upstream of a `_default` file.
_ANY_REGISTRY = "any-registry.invalid"


@dataclass(frozen=True)
class HostEntry:
    """One endpoint containerd derives from the file: a `[host]` table, or the server."""

    key: str  # as written: the [host."..."] key, or the server URL ("" when implicit)
    scheme: str
    host: str  # host[:port] contacted: the key for config.toml credentials
    path: str  # API root: `/v2` appended unless override_path or already there
    capabilities: tuple[str, ...]
    ca: tuple[str, ...] = ()
    client: tuple[tuple[str, str], ...] = ()  # (cert, key); key "" means the key is in cert
    skip_verify: bool = False
    header_names: tuple[str, ...] = ()
    override_path: bool = False
    dial_timeout: str | None = None
    is_server: bool = False
    implicit: bool = False  # the server line is absent: containerd's default upstream
    # ca, client or skip_verify is written, even empty or false: what containerd counts as TLS
    # configured (its explicitTLS), which turns http:// into HTTPS first on some releases.
    tls_written: bool = False

    @property
    def url(self) -> str:
        """The endpoint's API root URL."""
        return f"{self.scheme}://{self.host}{self.path}"

    def has_tls_options(self) -> bool:
        """ca, client or skip_verify is set, or written at all (`skip_verify = false`, `ca = []`): containerd counts both."""
        return bool(self.ca or self.client or self.skip_verify or self.tls_written)

    def files(self) -> list[str]:
        """Every file this endpoint makes containerd read on each pull (a missing one fails it)."""
        out = list(self.ca)
        for cert, key in self.client:
            out.append(cert)
            if key:
                out.append(key)
        return out


@dataclass(frozen=True)
class HostsFile:
    """What containerd makes of one hosts.toml."""

    entries: tuple[HostEntry, ...]  # [host] tables in file order, then the server: the order tried
    rejected: tuple[str, ...]  # why containerd would refuse the whole file (empty: it is used)
    notes: tuple[str, ...] = field(default=())  # behaviour worth knowing, e.g. HTTPS tried first


def default_upstream_entry(namespace: str, target: ContainerdVersion) -> HostEntry:
    """The endpoint containerd uses for `namespace` with no hosts.toml (or a refused one, or no `server`)."""
    host = names.default_upstream(namespace)
    scheme, skip = _default_scheme(host, target)
    return HostEntry("", scheme, host, "/v2", ALL_CAPABILITIES, skip_verify=skip, is_server=True, implicit=True, tls_written=skip)


def _is_localhost(host: str) -> bool:
    """Go's docker.IsLocalhost: `localhost` or a loopback address, the port split off when there is one."""
    name, port = names.split_host_port(host)
    # Go splits only a host with a port: a bracketed address without one stays bracketed (not loopback).
    bare = (name[1:-1] if name.startswith("[") else name) if port else host
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def _default_scheme(host: str, target: ContainerdVersion) -> tuple[str, bool]:
    """(scheme, skip_verify) containerd gives a registry's implicit upstream: HTTPS, except for localhost.

    A localhost registry is plain HTTP with TLS unverified from 1.6.9. From 1.6.25, 1.7.8 and in
    2.x the port decides: none or 443 is HTTPS, any other plain HTTP; TLS is unverified except on
    port 80. Unverified TLS on plain HTTP then makes those releases try HTTPS first (tries_https_first).
    """
    if not _is_localhost(host) or target < versions.LOCALHOST_HTTP:
        return "https", False
    if not versions.port_aware(target):
        return "http", True
    port = names.split_host_port(host)[1]
    return ("https" if port in ("", "443") else "http"), port != "80"


def _strings(value: Any, what: str, problems: list[str]) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    problems.append(f"{what}: must be a string or a list of strings")
    return []


def _client(value: Any, what: str, problems: list[str]) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(value, "")]
    if not isinstance(value, list):
        problems.append(f"{what}: must be a string or a list")
        return []
    out: list[tuple[str, str]] = []
    for item in value:
        if isinstance(item, str):
            out.append((item, ""))
        elif isinstance(item, list) and len(item) == 2 and all(isinstance(v, str) for v in item):
            out.append((item[0], item[1]))
        else:
            problems.append(f"{what}: each entry must be a path or a [cert, key] pair")
    return out


def _in_dir(directory: str, p: str) -> str:
    return p if posixpath.isabs(p) else posixpath.normpath(posixpath.join(directory, p))


def _entry(
    key: str, t: dict[str, Any], *, where: str, directory: str, target: ContainerdVersion, problems: list[str]
) -> HostEntry | None:
    raw = key if key.startswith("http") else f"https://{key}"
    try:
        u = urlsplit(raw)
        u.port  # noqa: B018 (raises ValueError on a bad port, as Go's url.Parse would refuse it)
    except ValueError as e:
        problems.append(f"{where}: {key!r} is not a URL: {e}")
        return None
    if not u.netloc:
        problems.append(f"{where}: {key!r} has no host")
        return None
    override = t.get("override_path", False)
    if not isinstance(override, bool):
        problems.append(f"{where}: override_path must be true or false")
        override = False
    path = posixpath.normpath(u.path) if u.path else ""
    if not override and not path.endswith("/v2"):
        path = f"{path}/v2" if path else "/v2"
    caps: tuple[str, ...] = ALL_CAPABILITIES
    known = (*ALL_CAPABILITIES, "referrers") if target >= versions.REFERRERS else ALL_CAPABILITIES
    if "capabilities" in t:
        raw_caps = _strings(t["capabilities"], f"{where}: capabilities", problems)
        caps = tuple(c.lower() for c in raw_caps)
        for c in caps:
            if c not in known:
                problems.append(f"{where}: unknown capability {c!r} (containerd {target} knows {', '.join(known)})")
    skip = t.get("skip_verify", False)
    if not isinstance(skip, bool):
        problems.append(f"{where}: skip_verify must be true or false")
        skip = False
    ca = [_in_dir(directory, p) for p in _strings(t["ca"], f"{where}: ca", problems)] if "ca" in t else []
    client = [(_in_dir(directory, c), _in_dir(directory, k) if k else "") for c, k in _client(t["client"], f"{where}: client", problems)] if "client" in t else []  # fmt: skip
    headers = t.get("header", {})
    if not isinstance(headers, dict):
        problems.append(f"{where}: header must be a table")
        headers = {}
    dial = t.get("dial_timeout")
    if dial is not None and target >= versions.DIAL_TIMEOUT:
        try:
            parse_duration(dial)
        except DurationError:
            problems.append(f"{where}: invalid dial_timeout {dial!r}")
    return HostEntry(
        key,
        u.scheme,
        u.netloc.rpartition("@")[2],  # Go's URL.Host: without any user:password@
        path,
        caps,
        tuple(ca),
        tuple(client),
        skip,
        tuple(sorted(headers)),
        override,
        str(dial) if dial is not None and target >= versions.DIAL_TIMEOUT else None,
        tls_written=any(k in t for k in ("ca", "client", "skip_verify")),
    )


def parse_hosts_file(text: str, *, namespace: str, directory: str, target: ContainerdVersion) -> HostsFile:
    """The endpoints containerd `target` derives from `text` for `namespace`, or why it refuses it.

    `directory` is the host path of the file's directory: relative `ca`/`client` paths are joined to it.
    """
    try:
        tree = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        return HostsFile((), (f"not valid TOML: {err}",))
    problems: list[str] = []
    host_tree = tree.get("host")
    if host_tree is None:
        if target < ROOT_ONLY_PARSES:
            problems.append(f"no [host] table: containerd {target} refuses the file (invalid `host` tree; fixed in 1.7.32)")
        host_tree = {}
    elif not isinstance(host_tree, dict):
        problems.append('host must be a table of [host."<url>"] tables')
        host_tree = {}
    entries: list[HostEntry] = []
    for written, t in host_tree.items():
        key = hide_password(written)
        where = f"host.{key!r}"
        if not isinstance(t, dict):
            problems.append(f"{where}: must be a table")
            continue
        e = _entry(key, t, where=where, directory=directory, target=target, problems=problems)
        if e is not None:
            entries.append(e)
    server = tree.get("server")
    if server is not None and not isinstance(server, str):
        problems.append("server must be a string")
        server = None
    if server:
        e = _entry(hide_password(server), tree, where="server", directory=directory, target=target, problems=problems)
        if e is not None:
            entries.append(replace(e, is_server=True))
    else:
        # No server: the namespace's default upstream, with every capability whatever the root
        # says, but the root's TLS settings and headers still apply (docs/containerd.md, ## hosts.toml: no `server` line).
        base = default_upstream_entry(namespace, target) if namespace != names.WILDCARD else None
        root = _entry("x", {k: v for k, v in tree.items() if k != "capabilities"}, where="(root)", directory=directory, target=target, problems=problems)  # fmt: skip
        if base is not None and root is not None:
            entries.append(
                replace(
                    base,
                    ca=root.ca,
                    client=root.client,
                    skip_verify=base.skip_verify or root.skip_verify,  # containerd sets localhost's over the root's
                    header_names=root.header_names,
                    tls_written=base.tls_written or root.tls_written,
                )
            )
    return HostsFile(tuple(entries), tuple(problems), _https_first_notes(entries, target))


def _https_first_notes(entries: list[HostEntry], target: ContainerdVersion) -> tuple[str, ...]:
    """A note for each http:// endpoint with TLS options that containerd `target` tries over HTTPS first."""
    return tuple(
        f"{_label(e)}: an http:// endpoint with TLS options: containerd "
        f"{target} tries HTTPS first, and a failure may be reported as a TLS error (containerd#11647)"
        for e in entries
        if e.scheme == "http" and e.has_tls_options() and tries_https_first(target, e.host)
    )


def _label(e: HostEntry) -> str:
    if e.implicit:
        return f"the default upstream {e.host}"
    return "server" if e.is_server else f"host.{e.key!r}"


def hide_password(url: str) -> str:
    """`url` with the password of any `user:password@` hidden: a hosts.toml key is shown in notes and problems."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:<redacted>@{host}{slash}{path}"


def tries_https_first(target: ContainerdVersion, host: str) -> bool:
    """Whether containerd `target` turns an http:// endpoint with TLS options into HTTPS, falling back to HTTP.

    As containerd's hosts.go does it (containerd#11647 and the follow-ups), release by release:
    before 1.6.25 and 1.7.0-1.7.6 never; 1.7.7 for every port; 1.6.25+ and 1.7.8-1.7.23 only for
    an explicit port other than 80; 1.7.24+ and 2.x for any port but 80, no port included.
    docs/containerd.md, ## hosts.toml: plain HTTP.
    """
    port = names.split_host_port(host)[1]
    if versions.port_aware(target):
        return port != "80" and (port != "" or target >= versions.HTTPS_FIRST_ANY_PORT)
    return target.major == 1 and target.minor == 7 and target >= versions.HTTPS_FIRST_1_7  # 1.7.7: every port


def entries_reading_files(text: str, *, directory: str, target: ContainerdVersion) -> tuple[HostEntry, ...]:
    """Every endpoint of the file with the CA and client files containerd reads on each pull.

    Root fields apply to the implicit upstream even in `_default`, where that upstream is
    whichever registry is pulled; they are included here (a missing one fails those pulls).
    """
    ns = names.namespace_of_dir(posixpath.basename(directory))
    ns = _ANY_REGISTRY if ns in (None, names.WILDCARD) else ns
    return parse_hosts_file(text, namespace=ns, directory=directory, target=target).entries
