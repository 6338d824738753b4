"""`doctor`: one checklist for the node.

The checks that need the live node (binary, CRI, permissions, network) are here; the ones that
follow from the files alone come from `render.diagnose`.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import posixpath
import socket
import ssl
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from nodecfg.node.apply import NodePaths
from nodecfg.node.containerd import find_binary, started_before_config
from nodecfg.node.fs import read_file
from nodecfg.render.diagnose import (
    Check,
    Status,
    config_checks,
    endpoints_by_dir,
    hosts_checks,
    private_keys,
    secret_header_files,
)
from nodecfg.render.explain import NodeView
from nodecfg.render.hostsfile import HostEntry, default_upstream_entry
from nodecfg.spec import names
from nodecfg.spec.versions import VersionSource

PROBE_TIMEOUT_S = 3.0
MAX_PARALLEL_PROBES = 16


def binary_check(paths: NodePaths, view: NodeView) -> Check:
    """The containerd binary and the version everything is judged against."""
    binary = find_binary(paths.root)
    target = view.target
    if binary is None:
        status = Status.WARN if target.source is not VersionSource.ASSUMED else Status.FAIL
        return Check(
            "containerd.binary",
            status,
            "no containerd binary under the node root",
            f"judging files for {target.describe()}",
            "pass --root where the host's / is mounted, or --containerd-version",
        )
    return Check("containerd.binary", Status.OK, f"{paths.host(binary)}: {target.describe()}")


def cri_check(paths: NodePaths, socket_real: str, view: NodeView, timeout: float = PROBE_TIMEOUT_S) -> Check:
    """The CRI plugin answers, is ready, and runs with the config_path config.toml has now.

    1.x reports the config_path it loaded over CRI; 2.x does not, so there a containerd that
    started after config.toml's last change is taken to run with the file as it is.
    """
    if not os.path.exists(socket_real):
        return Check(
            "containerd.cri",
            Status.FAIL,
            "containerd is not running (no socket)",
            f"{socket_real} does not exist",
            "start containerd (systemctl start containerd), or pass --containerd-socket",
        )
    from nodecfg.node.cri import CRIClient  # noqa: PLC0415 (grpc only when asked)

    with CRIClient(socket_real, timeout=timeout) as c:
        health = c.health(timeout=timeout)
    if not health.ready:
        return Check(
            "containerd.cri",
            Status.FAIL,
            "the CRI plugin is not healthy: kubelet cannot pull or run pods",
            "; ".join(health.problems),
            "read `journalctl -u containerd` for 'failed to load plugin io.containerd.grpc.v1.cri'",
        )
    want = view.registry.config_path or ""
    if health.config_path is None:
        before = started_before_config(paths)
        if before is None:
            return Check(
                "containerd.cri",
                Status.OK,
                f"CRI ready ({health.runtime}), config_path {want!r} in config.toml",
                "this release reports no registry config over CRI, and containerd's start time cannot be "
                "seen from here (no hostPID), so whether it loaded the latest config.toml is not known",
            )
        if before:
            return Check(
                "containerd.cri",
                Status.WARN,
                "containerd started before config.toml was last changed: it runs with an older file",
                f"config.toml says config_path {want!r}; {health.runtime} reports no registry config over CRI",
                "restart containerd (the daemon does this by itself unless restart.policy is never)",
            )
        return Check(
            "containerd.cri",
            Status.OK,
            f"CRI ready ({health.runtime}), config_path {want!r} (config.toml, unchanged since containerd started)",
        )
    loaded = health.config_path
    if loaded != want:
        return Check(
            "containerd.cri",
            Status.WARN,
            "containerd runs with another config_path than config.toml has",
            f"loaded {loaded!r}, file says {want!r}: config.toml changed since containerd started",
            "restart containerd (the daemon does this by itself unless restart.policy is never)",
        )
    return Check("containerd.cri", Status.OK, f"CRI ready ({health.runtime}), config_path {loaded!r} loaded")


def _mode(real: str) -> int | None:
    try:
        return os.stat(real).st_mode
    except OSError:
        return None


def permission_checks(paths: NodePaths, view: NodeView) -> list[Check]:
    """Credentials and keys not readable by others; hosts directories not writable by others."""
    out: list[Check] = []
    cfg = _mode(paths.real(paths.containerd_config))
    if cfg is not None and view.registry.auth and cfg & 0o077:
        out.append(
            Check(
                "perm.config",
                Status.FAIL,
                f"{paths.containerd_config} holds credentials and is readable by others (mode {stat.S_IMODE(cfg):04o})",
                "",
                f"chmod 600 {paths.containerd_config}",
            )
        )
    for root in view.registry.roots:
        for d in [root, *(p for p in view.dirs if p.startswith(root.rstrip("/") + "/"))]:
            m = _mode(paths.real(d))
            if m is not None and m & 0o002 and not m & stat.S_ISVTX:
                out.append(
                    Check(
                        "perm.hosts_dir",
                        Status.FAIL,
                        f"{d} is writable by every user (mode {stat.S_IMODE(m):04o})",
                        "anyone on the node could redirect image pulls",
                        f"chmod o-w {d}",
                    )
                )
    for file, headers in secret_header_files(view).items():
        m = _mode(paths.real(file))
        if m is not None and m & 0o044:
            owned = view.dirs[posixpath.dirname(file)].owned
            out.append(
                Check(
                    "perm.hosts_secret",
                    Status.FAIL,
                    f"{file}: credentials ({', '.join(headers)} header) readable by other users (mode {stat.S_IMODE(m):04o})",
                    "header values in hosts.toml are sent as they are: a bearer token or cookie there is a password",
                    f"chmod 600 {file}"
                    + (" (or `nodecfg apply`: it writes a hosts.toml with credentials 0600)" if owned else ""),
                )
            )
    for key in private_keys(view):
        m = _mode(paths.real(key))
        if m is not None and m & 0o004:
            out.append(
                Check(
                    "perm.key",
                    Status.FAIL,
                    f"{key}: a private key readable by every user (mode {stat.S_IMODE(m):04o})",
                    "",
                    f"chmod 600 {key}",
                )
            )
    if not out:
        out.append(Check("perm.ok", Status.OK, "credentials, keys and hosts directories are not open to other users"))
    return out


@dataclass(frozen=True)
class Probe:
    """One endpoint to reach: where, how, and whether pulls still have somewhere to go without it."""

    entry: HostEntry
    used_by: str  # the directory (or namespace) whose pulls use it
    has_fallback_before: bool  # an implicit upstream tried after mirrors


def _node_hosts(paths: NodePaths) -> dict[str, str]:
    """Names the node's /etc/hosts pins (containerd resolves with the node's files, not ours)."""
    info = read_file(paths.real("/etc/hosts"))
    out: dict[str, str] = {}
    for line in (info.content or b"").decode("utf-8", "replace").splitlines():
        fields = line.split("#", 1)[0].split()
        for name in fields[1:]:
            out.setdefault(name.lower(), fields[0])
    return out


def _resolve(host: str, port: int, pinned: dict[str, str]) -> tuple[str, str]:
    """(address, how it was found); raises OSError."""
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare)
        return bare, "literal address"
    except ValueError:
        pass
    if bare.lower() in pinned:
        return pinned[bare.lower()], "node /etc/hosts"
    info = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)
    return str(info[0][4][0]), "DNS"


def probe(p: Probe, pinned: dict[str, str], paths: NodePaths, timeout: float) -> Check:
    """DNS, TCP, TLS (with the endpoint's CA, client pair and skip_verify) and GET <api root>/."""
    e = p.entry
    host, _, port_text = e.host.rpartition(":") if not e.host.endswith("]") else (e.host, "", "")
    if not host or not port_text.isdigit():
        host, port_text = e.host, ""
    port = int(port_text) if port_text else (80 if e.scheme == "http" else 443)
    title = f"{e.url} ({p.used_by})"
    started = time.monotonic()
    try:
        addr, how = _resolve(host, port, pinned)
    except OSError as err:
        return Check(
            "net.dns",
            Status.WARN if p.has_fallback_before else Status.FAIL,
            f"{title}: the name does not resolve" + (" (only the fallback after the mirrors)" if p.has_fallback_before else ""),
            str(err),
            f"check DNS for {host} on the node",
        )
    name = host.strip("[]")
    try:
        sock: socket.socket = socket.create_connection((addr, port), timeout=timeout)
        if e.scheme == "https":
            ctx = ssl.create_default_context()
            for ca in e.ca:
                ctx.load_verify_locations(cafile=paths.real(ca))
            for cert, key in e.client[:1]:
                # No passphrase (containerd has none to give): an encrypted key fails here
                # instead of OpenSSL prompting on the terminal.
                ctx.load_cert_chain(paths.real(cert), paths.real(key) if key else None, password=lambda: "")
            if e.skip_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname=name)
        # The connection is made above (to the address found the node's way, with SNI for the
        # name); http.client only speaks HTTP over it, with the right Host header.
        conn = http.client.HTTPConnection(name, port, timeout=timeout)
        conn.sock = sock
        conn.request("GET", f"{e.path}/", headers={"User-Agent": "nodecfg-doctor"})
        status = conn.getresponse().status
        conn.close()
    except ssl.SSLCertVerificationError as err:
        return Check(
            "net.tls",
            Status.FAIL,
            f"{title}: TLS certificate not trusted",
            err.verify_message or str(err),
            "give the registry's CA (caFile) in registries.yaml",
        )
    except (OSError, ssl.SSLError, http.client.HTTPException) as err:
        status_if = Status.WARN if p.has_fallback_before else Status.FAIL
        return Check(
            "net.connect",
            status_if,
            f"{title}: cannot reach the registry API at {addr} ({how})"
            + (" (only the fallback after the mirrors)" if p.has_fallback_before else ""),
            f"{type(err).__name__}: {err}",
            "check the address, port, firewall and scheme (http:// vs https://)",
        )
    ms = round((time.monotonic() - started) * 1000)
    if status in (200, 401):
        note = "needs credentials" if status == 401 else "open"
        return Check("net.ok", Status.OK, f"{title}: registry API answers {status} ({note}) in {ms} ms via {how}")
    return Check(
        "net.api",
        Status.WARN,
        f"{title}: GET {e.path}/ answered {status}, not a registry API root (200 or 401)",
        "",
        "check the URL path (override_path for path-based mirrors)",
    )


def network_checks(paths: NodePaths, view: NodeView, timeout: float = PROBE_TIMEOUT_S) -> list[Check]:
    """Probe every distinct endpoint of every used hosts.toml (and the registries without one)."""
    probes: dict[tuple[object, ...], Probe] = {}
    by_dir = endpoints_by_dir(view)
    for d, entries in by_dir.items():
        for i, e in enumerate(entries):
            key = (e.scheme, e.host, e.path, e.ca, e.client, e.skip_verify)
            probes.setdefault(key, Probe(e, d, e.implicit and i > 0))
    for d in view.dirs:
        ns = names.namespace_of_dir(os.path.basename(d))
        if d not in by_dir and ns not in (None, names.WILDCARD):
            e = default_upstream_entry(ns, view.target.version)
            probes.setdefault((e.scheme, e.host, e.path, (), (), False), Probe(e, d, False))
    if not probes:
        return [Check("net.none", Status.OK, "no registry endpoints to probe")]
    pinned = _node_hosts(paths)
    run: Callable[[Probe], Check] = lambda p: probe(p, pinned, paths, timeout)  # noqa: E731
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_PROBES, len(probes))) as pool:
        return list(pool.map(run, probes.values()))


def doctor(
    paths: NodePaths, view: NodeView, *, socket_real: str | None, network: bool, timeout: float = PROBE_TIMEOUT_S
) -> list[Check]:
    """The whole checklist, in reading order."""
    checks = [binary_check(paths, view)]
    checks += config_checks(view, paths.hosts_dir)
    if socket_real is None:
        checks.append(Check("containerd.cri", Status.SKIP, "CRI health not checked (--no-cri)"))
    else:
        checks.append(cri_check(paths, socket_real, view, timeout))
    checks += hosts_checks(view)
    checks += permission_checks(paths, view)
    if network:
        checks += network_checks(paths, view, timeout)
    else:
        checks.append(Check("net.skipped", Status.SKIP, "network probes skipped (--no-network)"))
    return checks
