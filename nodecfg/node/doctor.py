"""`doctor`: one checklist for the node.

The checks that need the live node (binary, CRI, permissions, network) are here; the ones that
follow from the files alone come from `render.diagnose`.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from nodecfg.containerd import names
from nodecfg.containerd.effective import ConfigFile
from nodecfg.containerd.hosts_toml import HostEntry, default_upstream_entry
from nodecfg.containerd.versions import VersionSource
from nodecfg.node.config_files import imported_files
from nodecfg.node.containerd import DumpCheck, check_loaded, find_binary, started_before_config
from nodecfg.node.fs import NodeError, read_file
from nodecfg.node.paths import NodePaths
from nodecfg.node.reach import Pinned, Stage, host_and_port, node_hosts, reach
from nodecfg.node.state import load_state
from nodecfg.node.status import daemon_mirrors
from nodecfg.oncall.diagnose import (
    Check,
    Status,
    config_checks,
    endpoints_by_dir,
    hosts_checks,
    private_keys,
    secret_header_files,
)
from nodecfg.oncall.view import NodeView
from nodecfg.plan.redaction import redact
from nodecfg.spec.secrets import secret_values

PROBE_TIMEOUT_S = 3.0
MAX_PARALLEL_PROBES = 16


def binary_check(paths: NodePaths, view: NodeView) -> Check:
    """The containerd binary and the version everything is judged against."""
    binary = find_binary(paths.root, paths.real(paths.containerd_socket))
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


def loaded_checks(paths: NodePaths, view: NodeView) -> list[Check]:
    """The node's own containerd loads config.toml, with what it imports, as nodecfg wrote it.

    `config dump` of the files on disk (imports resolved under the root): the `config_path` and
    the credentials nodecfg wrote must be where that binary reads them. No check without a binary
    (`containerd.binary` says so); the model's verdict is in the config checks.
    """
    binary = find_binary(paths.root, paths.real(paths.containerd_socket))
    return [] if binary is None else [_loaded_check(paths, view, binary)]


def _config_files(paths: NodePaths, view: NodeView) -> list[ConfigFile]:
    """config.toml and the files it imports, as containerd loads them; NodeError when one cannot be read."""
    content = read_file(paths.real(paths.containerd_config)).content
    try:
        text = content.decode("utf-8") if content is not None else ""
        main = tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as e:
        raise NodeError(f"read {paths.containerd_config}: not TOML containerd can load ({type(e).__name__})") from None
    return [ConfigFile(paths.containerd_config, main, text), *imported_files(paths, main, view.target.version)]


def _loaded_check(paths: NodePaths, view: NodeView, binary: str) -> Check:
    try:
        main, *imported = _config_files(paths, view)
    except NodeError as e:
        return Check("config.loaded", Status.SKIP, "config.toml not loaded with containerd", str(e))
    check = check_loaded(binary, main.text or "", imported, paths, load_state(paths.real(paths.state_dir)).auth_hosts)
    secrets = frozenset(v for f in (main, *imported) if f.plain is not None for v in secret_values(f.plain))
    check = DumpCheck(check.ran, tuple(redact(p, secrets) for p in check.problems), check.note)
    if not check.ran:
        return Check("config.loaded", Status.SKIP, "config.toml not loaded with the node's containerd", check.note)
    files = f"config.toml and {len(imported)} imported file(s)" if imported else "config.toml"
    if check.problems:
        return Check(
            "config.loaded",
            Status.FAIL,
            f"the node's containerd does not load {files} as nodecfg wrote it",
            "; ".join(check.problems),
            "see the checks above for the table or file that wins; `nodecfg diff` says what apply would change",
        )
    return Check("config.loaded", Status.OK, f"the node's containerd loads {files} with config_path {paths.hosts_dir!r}")


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


def _files_with_credentials(paths: NodePaths, view: NodeView) -> list[str]:
    """config.toml and the files it imports that hold registry credentials (by value, whatever the spelling)."""
    try:
        files = _config_files(paths, view)
    except NodeError:
        return [paths.containerd_config] if view.registry.auth else []
    return [f.path for f in files if f.plain is not None and secret_values(f.plain)]


def permission_checks(paths: NodePaths, view: NodeView) -> list[Check]:
    """Credentials and keys not readable by others; hosts directories not writable by others."""
    out: list[Check] = []
    for path in _files_with_credentials(paths, view):
        mode = _mode(paths.real(path))
        if mode is not None and mode & 0o077:
            out.append(
                Check(
                    "perm.config",
                    Status.FAIL,
                    f"{path} holds credentials and is readable by others (mode {stat.S_IMODE(mode):04o})",
                    "",
                    f"chmod 600 {path}",
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


def probe(p: Probe, pinned: Pinned, paths: NodePaths, timeout: float) -> Check:
    """DNS, TCP, TLS (with the endpoint's CA, client pair and skip_verify) and GET <api root>/."""
    e = p.entry
    host, _port = host_and_port(e)
    title = f"{e.url} ({p.used_by})"
    r = reach(e, pinned, paths, timeout, agent="nodecfg-doctor")
    if r.stage is Stage.DNS:
        return Check(
            "net.dns",
            Status.WARN if p.has_fallback_before else Status.FAIL,
            f"{title}: the name does not resolve" + (" (only the fallback after the mirrors)" if p.has_fallback_before else ""),
            r.detail,
            f"check DNS for {host} on the node",
        )
    if r.stage is Stage.UNTRUSTED:
        return Check(
            "net.tls",
            Status.FAIL,
            f"{title}: TLS certificate not trusted",
            r.detail,
            "give the registry's CA (caFile) in registries.yaml",
        )
    if r.stage is Stage.NO_ANSWER:
        return Check(
            "net.no_answer",
            Status.WARN if p.has_fallback_before else Status.FAIL,
            f"{title}: connected to {r.address} ({r.how}) but no answer to GET {e.path}/"
            + (" (only the fallback after the mirrors)" if p.has_fallback_before else ""),
            f"{r.detail}; containerd 2.3+ waits 30 s for each request to it before trying the next host,"
            " older releases until the pull is cancelled",
            "the server takes connections but does not serve them: check the registry process, or the proxy or"
            " load balancer in front of it and its backends",
        )
    if r.stage is not Stage.ANSWERED:
        return Check(
            "net.connect",
            Status.WARN if p.has_fallback_before else Status.FAIL,
            f"{title}: cannot reach the registry API at {r.address} ({r.how})"
            + (" (only the fallback after the mirrors)" if p.has_fallback_before else ""),
            r.detail,
            "check the address, port, firewall and scheme (http:// vs https://)",
        )
    ms = round(r.seconds * 1000)
    if r.status in (200, 401):
        note = "needs credentials" if r.status == 401 else "open"
        return Check("net.ok", Status.OK, f"{title}: registry API answers {r.status} ({note}) in {ms} ms via {r.how}")
    return Check(
        "net.api",
        Status.WARN,
        f"{title}: GET {e.path}/ answered {r.status}, not a registry API root (200 or 401)",
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
    pinned = node_hosts(paths)
    run: Callable[[Probe], Check] = lambda p: probe(p, pinned, paths, timeout)  # noqa: E731
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_PROBES, len(probes))) as pool:
        return list(pool.map(run, probes.values()))


def mirror_checks(paths: NodePaths) -> list[Check]:
    """The daemon's live view: every mirror its health checks keep out of rotation."""
    out = []
    for m in daemon_mirrors(paths.real(paths.state_dir)):
        note = m.note()
        if note:
            out.append(
                Check(
                    "mirror.out",
                    Status.WARN,
                    note,
                    f"last probe: {m.last_probe or '-'}",
                    "pulls go to the other mirrors or the registry meanwhile; it is put back after good probes",
                )
            )
    return out


def doctor(
    paths: NodePaths, view: NodeView, *, socket_real: str | None, network: bool, timeout: float = PROBE_TIMEOUT_S
) -> list[Check]:
    """The whole checklist, in reading order."""
    checks = [binary_check(paths, view)]
    checks += config_checks(view, paths.hosts_dir)
    checks += loaded_checks(paths, view)
    if socket_real is None:
        checks.append(Check("containerd.cri", Status.SKIP, "CRI health not checked (--no-cri)"))
    else:
        checks.append(cri_check(paths, socket_real, view, timeout))
    checks += hosts_checks(view)
    checks += permission_checks(paths, view)
    checks += mirror_checks(paths)
    if network:
        checks += network_checks(paths, view, timeout)
    else:
        checks.append(Check("net.skipped", Status.SKIP, "network probes skipped (--no-network)"))
    return checks
