"""Render one containerd `hosts.toml` per registry (docs/containerd.md, ## hosts.toml).

Built as tomlkit documents, never from text templates; the result is re-parsed and checked.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import tomlkit

from nodecfg.containerd import names, versions
from nodecfg.containerd.durations import Duration
from nodecfg.containerd.errors import ConfigError
from nodecfg.containerd.hosts_toml import HostEntry, parse_hosts_file
from nodecfg.containerd.legacy import LegacyTLS
from nodecfg.containerd.versions import ContainerdVersion
from nodecfg.render.files import DesiredFile, FileKind
from nodecfg.render.materials import Materials, material
from nodecfg.spec.models import PEM_CERT_MARK, EndpointTLS, Registry
from nodecfg.spec.secrets import is_secret_header

_PEM_KEY_MARK = "PRIVATE KEY-----"
OWNER_MARK = "# Managed by nodecfg"
HEADER = f"{OWNER_MARK}: do not edit, changes are overwritten."
# The files nodecfg writes in a registry's directory (mirrors prefix them with `mirror<N>-`).
# Names ending in .pem/.cert/.key keep Docker's cert-dir loader (used when hosts.toml fails to
# parse, docs/containerd.md, ## hosts.toml: a refused file) from treating them as `*.crt` CAs.
HOSTS_TOML = "hosts.toml"
CA_FILE = "ca.pem"
CLIENT_CERT_FILE = "client.cert"
CLIENT_KEY_FILE = "client.key"
CLIENT_COMBINED_FILE = "client.pem"  # certificate and key in one file: secret


def kind_of_file_name(name: str) -> FileKind:
    """What a file nodecfg wrote is, from its name (for stale files known only by their path)."""
    if name == HOSTS_TOML:
        return FileKind.HOSTS
    if name.endswith((CLIENT_KEY_FILE, CLIENT_COMBINED_FILE)):
        return FileKind.CLIENT_KEY
    return FileKind.CA if name.endswith(CA_FILE) else FileKind.CLIENT_CERT


def is_owned_hosts_toml(content: bytes) -> bool:
    """True when a hosts.toml carries nodecfg's ownership header."""
    return content.startswith(OWNER_MARK.encode())


@dataclass(frozen=True)
class MirrorEndpoint:
    """A mirror nodecfg renders, as containerd reaches it: what the daemon probes."""

    registry: str  # the input's registries key (`*` included)
    url: str  # the [host] key in hosts.toml (normalized URL): its identity for routing
    entry: HostEntry  # scheme, host, API root, TLS files (host paths), as containerd reads them
    fallback: bool  # the registry's own upstream stays after the mirrors


@dataclass(frozen=True)
class _Endpoint:
    url: str | None  # None: containerd's implicit upstream (`server` omitted)
    tls: EndpointTLS | None
    capabilities: tuple[str, ...] | None
    override_path: bool
    dial_timeout: Duration | None
    file_prefix: str
    location: str


def _pem(data: bytes, mark: str) -> bool:
    return mark.encode() in data


def _with_newline(data: bytes) -> bytes:
    return data if data.endswith(b"\n") else data + b"\n"


class _Renderer:
    def __init__(
        self, key: str, hosts_dir: str, materials: Materials, target: ContainerdVersion, legacy_tls: Mapping[str, LegacyTLS]
    ) -> None:
        self.key = key
        self.dir = posixpath.join(hosts_dir, names.hosts_dir_name(key))
        self.materials = materials
        self.target = target
        self.legacy_tls = legacy_tls
        self.files: list[DesiredFile] = []
        self.holds_secret = False  # a credential-bearing header value: the hosts.toml is 0600
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.endpoints: list[MirrorEndpoint] = []
        self.routed_out: list[str] = []

    def _file(self, name: str, content: bytes, kind: FileKind, *, secret: bool = False) -> str:
        path = posixpath.join(self.dir, name)
        mode = 0o600 if secret or kind is FileKind.CLIENT_KEY else 0o644
        self.files.append(DesiredFile(path, _with_newline(content), mode, kind))
        return path

    def _tls(self, ep: _Endpoint, out: Any) -> None:
        """Write ca / client / skip_verify for one endpoint into `out` (document or table)."""
        tls = ep.tls
        authority = ep.url.split("://", 1)[1].split("/", 1)[0] if ep.url else names.default_upstream(self.key)
        legacy = self.legacy_tls.get(authority)
        if tls is not None and tls.has_tls_options():
            legacy = None  # what the input says for this endpoint replaces config.toml's old tls
        if (tls is not None and tls.skipVerify) or (legacy is not None and legacy.skip_verify):
            out["skip_verify"] = True
        if tls is not None and (tls.ca or tls.caFile):
            data = (
                tls.ca.encode() if tls.ca else material(self.materials, tls.caFile or "", f"{ep.location}.caFile", self.problems)
            )
            if data is not None:
                field = f"{ep.location}.caFile: {tls.caFile!r}" if tls.caFile else f"{ep.location}.ca"
                if not _pem(data, PEM_CERT_MARK):
                    self.problems.append(f"{field} holds no PEM certificate")
                if _pem(data, _PEM_KEY_MARK):
                    # A CA file is written readable by all (containerd needs no secret there): a key in it would be published.
                    self.problems.append(f"{field} holds a private key too; give the CA certificates only")
                out["ca"] = self._file(f"{ep.file_prefix}{CA_FILE}", data, FileKind.CA)
        elif legacy is not None and legacy.ca_file:
            out["ca"] = legacy.ca_file
        if tls is not None and tls.clientCertFile:
            cert = material(self.materials, tls.clientCertFile, f"{ep.location}.clientCertFile", self.problems)
            key = (
                material(self.materials, tls.clientKeyFile, f"{ep.location}.clientKeyFile", self.problems)
                if tls.clientKeyFile
                else None
            )
            if cert is not None and not _pem(cert, PEM_CERT_MARK):
                self.problems.append(f"{ep.location}.clientCertFile: {tls.clientCertFile!r} holds no PEM certificate")
            if tls.clientKeyFile is None:
                if cert is not None and not _pem(cert, _PEM_KEY_MARK):
                    self.problems.append(
                        f"{ep.location}.clientCertFile: {tls.clientCertFile!r} holds no private key; set clientKeyFile"
                    )
                if cert is not None:
                    out["client"] = self._file(f"{ep.file_prefix}{CLIENT_COMBINED_FILE}", cert, FileKind.CLIENT_KEY)
            elif cert is not None and key is not None:
                if not _pem(key, _PEM_KEY_MARK):
                    self.problems.append(f"{ep.location}.clientKeyFile: {tls.clientKeyFile!r} holds no PEM private key")
                pair = [
                    # A certificate file that carries its key too stays as private as the key file.
                    self._file(
                        f"{ep.file_prefix}{CLIENT_CERT_FILE}", cert, FileKind.CLIENT_CERT, secret=_pem(cert, _PEM_KEY_MARK)
                    ),
                    self._file(f"{ep.file_prefix}{CLIENT_KEY_FILE}", key, FileKind.CLIENT_KEY),
                ]
                out["client"] = [pair]
        elif legacy is not None and legacy.cert_file:
            out["client"] = [[legacy.cert_file, legacy.key_file or ""]]

    def _fields(self, ep: _Endpoint, out: Any) -> None:
        if ep.capabilities is not None:
            caps = list(ep.capabilities)
            if "referrers" in caps and self.target < versions.REFERRERS:
                caps.remove("referrers")
                self.warnings.append(
                    f"{ep.location}.capabilities: 'referrers' dropped: containerd {self.target} "
                    "would reject the whole file (needs >= 2.2)"
                )
            if not caps:
                self.problems.append(f"{ep.location}.capabilities: nothing left that containerd {self.target} knows")
            out["capabilities"] = caps
        if ep.override_path:
            out["override_path"] = True
        self._tls(ep, out)
        if ep.dial_timeout is not None:
            if self.target >= versions.DIAL_TIMEOUT:
                out["dial_timeout"] = str(ep.dial_timeout)
            else:
                self.warnings.append(
                    f"{ep.location}.dialTimeout: not rendered: containerd {self.target} does not read it (needs >= 2.1)"
                )
        if ep.tls is not None and ep.tls.headers:
            header = tomlkit.table()
            for name, values in ep.tls.headers.items():
                header[name] = list(values)
                self.holds_secret = self.holds_secret or is_secret_header(name)
            out["header"] = header

    def _mirror_tables(self, reg: Registry, mirrors: list[_Endpoint]) -> dict[str, Any]:
        """Every mirror's [host] table, out of rotation or not.

        Its CA and client files stay written, so the daemon's probe reaches it as containerd
        would, and putting it back is one hosts.toml write.
        """
        tables: dict[str, Any] = {}
        for ep in mirrors:
            assert ep.url is not None
            t = tomlkit.table()
            self._fields(ep, t)
            tables[ep.url] = t
            parsed = parse_hosts_file(
                tomlkit.dumps({"host": {ep.url: t.unwrap()}}), namespace=names.WILDCARD, directory=self.dir, target=self.target
            )
            entry = next((e for e in parsed.entries if e.key == ep.url), None)
            if entry is not None:
                self.endpoints.append(MirrorEndpoint(self.key, ep.url, entry, reg.fallback))
        return tables

    def _in_rotation(self, reg: Registry, mirrors: list[_Endpoint], sick: frozenset[str]) -> list[_Endpoint]:
        """The mirrors minus the sick ones; never none where the upstream is forbidden."""
        healthy = [ep for ep in mirrors if ep.url not in sick]
        if len(healthy) == len(mirrors):
            return mirrors
        if not healthy and not reg.fallback:
            self.warnings.append(
                f"registries.{self.key!r}: every mirror fails its health checks and fallback is false: "
                "all are kept (there is nowhere else to pull from)"
            )
            return mirrors
        self.routed_out.extend(ep.url for ep in mirrors if ep.url in sick and ep.url is not None)
        return healthy

    def render(self, reg: Registry, sick: frozenset[str] = frozenset()) -> None:
        loc = f"registries.{self.key!r}"
        mirrors = [
            _Endpoint(
                m.normalized_url(),
                m,
                tuple(m.capabilities),
                m.overridePath,
                m.dialTimeout,
                f"mirror{i + 1}-",
                f"{loc}.mirrors[{i}]",
            )
            for i, m in enumerate(reg.mirrors)
        ]
        tables = self._mirror_tables(reg, mirrors)
        mirrors = self._in_rotation(reg, mirrors, sick)
        if reg.fallback:
            if self.key == names.WILDCARD:
                server = _Endpoint(None, reg, None, False, None, "", loc)
            else:
                scheme = "http" if reg.plainHTTP else "https"
                server = _Endpoint(f"{scheme}://{names.default_upstream(self.key)}", reg, None, False, None, "", loc)
            hosts = mirrors
        else:
            # containerd always appends the namespace's upstream when `server` is missing, so the
            # only way to never contact it is to make the last mirror the server (docs/containerd.md, ## hosts.toml: no `server`).
            server, hosts = mirrors[-1], mirrors[:-1]
            if reg.has_tls_options() or reg.headers:
                self.warnings.append(f"{loc}: TLS options and headers of the registry itself are unused with fallback: false")
        doc = tomlkit.document()
        doc.add(tomlkit.comment(HEADER[2:]))
        doc.add(tomlkit.comment(f"Registry: {self.key}"))
        doc.add(tomlkit.nl())
        if server.url is not None:
            doc["server"] = server.url
        if server.url in tables:  # fallback: false, the last mirror is the server
            for k, v in tables[server.url].unwrap().items():
                doc[k] = v
        else:
            self._fields(server, doc)
        host_table = tomlkit.table(is_super_table=bool(hosts))
        for ep in hosts:
            assert ep.url is not None
            host_table[ep.url] = tables[ep.url]
        # containerd 1.6 ignores a hosts.toml with no [host] table at all ("invalid `host` tree",
        # containerd#10027): with no mirror to list, an empty [host] table keeps the file valid.
        doc["host"] = host_table
        text = doc.as_string()
        self.problems.extend(f"{self.dir}/hosts.toml (rendered): {p}" for p in check_hosts_toml(text, self.target))
        # containerd reads hosts.toml as root; only a bearer token or cookie in it makes it secret
        # (config.toml with credentials is 0600 for the same reason).
        self._file(HOSTS_TOML, text.encode(), FileKind.HOSTS, secret=self.holds_secret)


def check_hosts_toml(text: str, target: ContainerdVersion) -> list[str]:
    """What containerd `target` would refuse in this hosts.toml, and TLS options on plain HTTP.

    containerd ignores a refused file without telling the puller; nodecfg never renders either.
    """
    parsed = parse_hosts_file(text, namespace=names.WILDCARD, directory="/", target=target)
    problems = list(parsed.rejected)
    for e in parsed.entries:
        if e.scheme == "http" and e.has_tls_options():
            where = "server" if e.is_server else f"host.{e.key!r}"
            problems.append(
                f"{where}: TLS options on a plain-HTTP endpoint make containerd 1.6.25+, 1.7.7+ and 2.x try HTTPS first"
            )
    return problems


@dataclass(frozen=True)
class RenderedHosts:
    """hosts.toml and cert files for every registry, and the mirrors in them."""

    files: list[DesiredFile]
    warnings: list[str]
    endpoints: list[MirrorEndpoint]  # every mirror, in rotation or not
    routed_out: list[tuple[str, str]]  # (registry, url) left out of hosts.toml as sick


def render_hosts(
    registries: Mapping[str, Registry],
    *,
    hosts_dir: str,
    materials: Materials,
    target: ContainerdVersion,
    legacy_tls: Mapping[str, LegacyTLS],
    sick: Mapping[str, frozenset[str]] | None = None,
) -> RenderedHosts:
    """Render every registry; `sick` maps a registry to mirror URLs to leave out. ConfigError lists problems."""
    out = RenderedHosts([], [], [], [])
    problems: list[str] = []
    for key in sorted(registries):
        r = _Renderer(key, hosts_dir, materials, target, legacy_tls)
        r.render(registries[key], (sick or {}).get(key, frozenset()))
        out.files.extend(r.files)
        out.warnings.extend(r.warnings)
        out.endpoints.extend(r.endpoints)
        out.routed_out.extend((key, url) for url in r.routed_out)
        problems.extend(r.problems)
    if problems:
        raise ConfigError(problems)
    return out
