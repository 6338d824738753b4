"""containerd versions, and which hosts.toml / config.toml features each one understands."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

_VERSION_RE = re.compile(r"(?<![0-9.])v?([0-9]+)\.([0-9]+)(?:\.([0-9]+))?")


class VersionSource(str, Enum):
    """Where the target containerd version came from, so output can say what was assumed."""

    FLAG = "flag"
    RUNNING = "running containerd"  # its CRI Version call: what actually reads the files
    BINARY = "binary"
    PACKAGE = "package"
    STATE = "last apply"  # what the last apply rendered for, recorded in state.json
    ASSUMED = "assumed"


@dataclass(frozen=True, order=True)
class ContainerdVersion:
    """A containerd release as (major, minor, patch)."""

    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> ContainerdVersion:
        """Find the first x.y[.z] in `text` ('1.6.20~ds1-1+deb12u3', 'containerd v2.1.0 ...')."""
        m = _VERSION_RE.search(text)
        if m is None:
            raise ValueError(f"no containerd version (x.y.z) found in {text!r}")
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


# Feature thresholds (docs/containerd.md: ## hosts.toml, ## config.toml, ## Pulls on 2.1+: the transfer service).
DIAL_TIMEOUT = ContainerdVersion(2, 1, 0)
# CRI pulls go through the transfer service (unless deprecated registry settings are present).
TRANSFER_PULL = ContainerdVersion(2, 1, 0)
REFERRERS = ContainerdVersion(2, 2, 0)
DEFAULT_NAMESPACE_1_6 = ContainerdVersion(1, 6, 17)
DEFAULT_NAMESPACE_1_7 = ContainerdVersion(1, 7, 0)
CONFIG_V3 = ContainerdVersion(2, 0, 0)
# 2.3 raised the config version to 4 (`config default` writes it; 2.0-2.2 refuse such a file) and
# migrates every older file on load, the CRI step included: a version 3 file's leftover
# io.containerd.grpc.v1.cri registry table then replaces its io.containerd.cri.v1.images one, and a
# version 1 file's registry table is read again (docs/containerd.md, ## config.toml by release).
CONFIG_V4 = ContainerdVersion(2, 3, 0)
# An http:// endpoint with TLS options is tried over HTTPS first, falling back to HTTP: in 1.7.7
# for every port, then from the port-aware change on (1.6.25, 1.7.8, 2.x) by the port, which also
# decides a localhost registry's scheme (tries_https_first, default_upstream_entry in hosts_toml).
HTTPS_FIRST_1_7 = ContainerdVersion(1, 7, 7)
PORT_AWARE_1_6 = ContainerdVersion(1, 6, 25)
PORT_AWARE_1_7 = ContainerdVersion(1, 7, 8)
HTTPS_FIRST_ANY_PORT = ContainerdVersion(1, 7, 24)  # and 2.x: no port counts too (only :80 stays HTTP)
LOCALHOST_HTTP = ContainerdVersion(1, 6, 9)  # a localhost registry with no hosts.toml: plain HTTP, TLS unverified
# What is assumed when nothing says: the oldest release we support, so that nothing is rendered
# that an older containerd would reject (referrers) and nothing is promised it would ignore.
ASSUMED = ContainerdVersion(1, 6, 0)


def supports_default_namespace(v: ContainerdVersion) -> bool:
    """`_default` arrived in 1.6.17 (backport) and 1.7.0 (containerd#8053)."""
    if v.major == 1 and v.minor == 6:
        return v >= DEFAULT_NAMESPACE_1_6
    return v >= DEFAULT_NAMESPACE_1_7


def port_aware(v: ContainerdVersion) -> bool:
    """The HTTP-fallback change that looks at the port: 1.6.25 (backport), 1.7.8, and every 2.x."""
    if v.major == 1 and v.minor == 6:
        return v >= PORT_AWARE_1_6
    return v >= PORT_AWARE_1_7


@dataclass(frozen=True)
class ContainerdTarget:
    """The containerd release files are rendered for, and how that was learned."""

    version: ContainerdVersion
    source: VersionSource
    # Set when the sources disagree (the binary on disk is not the release that runs: an upgrade
    # or downgrade waiting for a restart); files are then rendered for the lower of the two.
    warning: str = ""

    def describe(self) -> str:
        """Human-readable 'containerd 1.6.20 (from the binary)'."""
        if self.source is VersionSource.ASSUMED:
            return f"containerd {self.version} (assumed: version not detected; pass --containerd-version)"
        return f"containerd {self.version} (from the {self.source.value})"
