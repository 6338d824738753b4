"""Find out which containerd the node runs (I/O: runs its binary, reads the package database)."""

from __future__ import annotations

import os
import re
import subprocess

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
