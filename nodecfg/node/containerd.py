"""Find out which containerd the node runs (I/O: runs its binary, reads the package database)."""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import tomllib
from dataclasses import dataclass
from typing import Any

import psutil

from nodecfg.node.fs import host_path
from nodecfg.spec.versions import ASSUMED, ContainerdTarget, ContainerdVersion, VersionSource

BINARY_CANDIDATES = ("/usr/bin/containerd", "/usr/local/bin/containerd", "/bin/containerd")
PACKAGE_NAMES = ("containerd", "containerd.io")


def _from_binary(root: str) -> ContainerdVersion | None:
    for candidate in BINARY_CANDIDATES:
        real = host_path(root, candidate)
        if not os.access(real, os.X_OK):
            continue
        try:
            out = subprocess.run([real, "--version"], capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            continue  # a host binary may not run inside a container (libraries): try the package db
        if out.returncode == 0:
            # "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
            for token in out.stdout.split()[1:]:
                if re.match(r"^v?[0-9]+\.[0-9]+", token):
                    return ContainerdVersion.parse(token)
    return None


def _from_dpkg(root: str) -> ContainerdVersion | None:
    try:
        with open(host_path(root, "/var/lib/dpkg/status"), encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    for stanza in text.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", stanza, flags=re.M))
        if fields.get("Package") in PACKAGE_NAMES and "installed" in fields.get("Status", "").split():
            try:
                return ContainerdVersion.parse(fields.get("Version", "").split(":")[-1])
            except ValueError:
                return None
    return None


def detect_containerd(root: str, flag: str | None) -> ContainerdTarget:
    """--containerd-version, else the binary under root, else the package database, else assumed."""
    if flag:
        return ContainerdTarget(ContainerdVersion.parse(flag), VersionSource.FLAG)
    v = _from_binary(root)
    if v is not None:
        return ContainerdTarget(v, VersionSource.BINARY)
    v = _from_dpkg(root)
    if v is not None:
        return ContainerdTarget(v, VersionSource.PACKAGE)
    return ContainerdTarget(ASSUMED, VersionSource.ASSUMED)


def find_binary(root: str) -> str | None:
    """The host's containerd binary (as this process opens it), if there is one."""
    for candidate in BINARY_CANDIDATES:
        real = host_path(root, candidate)
        if os.access(real, os.X_OK):
            return real
    return None


def serving_pid(socket_real: str) -> int | None:
    """The pid of the process listening on containerd's socket (SO_PEERCRED), or None.

    The kernel reports it in this process's pid namespace: a DaemonSet needs `hostPID` for it to
    name the host's containerd (without it the answer is 0, taken as unknown).
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(socket_real)
            pid, _uid, _gid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    except OSError:
        return None
    return pid or None


def started_at(pid: int | None) -> float | None:
    """When process `pid` started (epoch seconds), or None if unknown."""
    if pid is None:
        return None
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None


@dataclass(frozen=True)
class DumpCheck:
    """What `containerd --config <candidate> config dump` said about a candidate config.toml."""

    ran: bool  # False: the host binary could not run here (the check was skipped, not passed)
    problems: tuple[str, ...]
    note: str = ""


def _dig(tree: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(k)
    return tree


def check_with_containerd(binary: str | None, candidate_real: str, hosts_dir: str, auth_hosts: frozenset[str]) -> DumpCheck:
    """Load the candidate with the host's containerd and check that our edits landed.

    `config dump` catches TOML and type errors and shows the merged result (imports, version
    migration); it does not run plugin validation, so the `mirrors`/`configs.tls` rules are checked
    by the renderer, and a typo'd key would show here as a missing `config_path`.
    """
    if binary is None:
        return DumpCheck(False, (), "no containerd binary found on the node")
    try:
        out = subprocess.run(
            [binary, "--config", candidate_real, "config", "dump"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError) as e:
        return DumpCheck(False, (), f"{binary} could not run here: {e}")
    if out.returncode != 0:
        lines = [ln.strip() for ln in out.stderr.splitlines() if ln.strip()]
        return DumpCheck(
            True, (f"containerd rejects the candidate config.toml: {lines[-1] if lines else 'exit ' + str(out.returncode)}",)
        )
    try:
        dumped = tomllib.loads(out.stdout)
    except tomllib.TOMLDecodeError as e:
        return DumpCheck(False, (), f"could not read containerd's config dump: {e}")
    registry = _dig(dumped, "plugins", "io.containerd.grpc.v1.cri", "registry")
    if not isinstance(registry, dict) or "config_path" not in registry:
        registry = _dig(dumped, "plugins", "io.containerd.cri.v1.images", "registry")
    if not isinstance(registry, dict):
        return DumpCheck(True, ("containerd's config dump has no CRI registry table: the edit would not take effect",))
    problems = []
    if hosts_dir not in str(registry.get("config_path") or "").split(":"):
        problems.append(f"containerd would load config_path = {registry.get('config_path')!r}, not {hosts_dir!r}")
    configs = registry.get("configs") or {}
    for host in sorted(auth_hosts):
        if not isinstance(_dig(configs, host, "auth"), dict):
            problems.append(f"containerd would not load the credentials for {host}")
    return DumpCheck(True, tuple(problems))
