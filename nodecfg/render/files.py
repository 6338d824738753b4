"""A file nodecfg wants on the node: host path, bytes, mode and what kind of file it is."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class FileKind(str, Enum):
    """What a desired file is; decides its change class and how its diff may be shown."""

    HOSTS = "hosts.toml"
    CA = "ca"
    CLIENT_CERT = "client-cert"
    CLIENT_KEY = "client-key"  # shown in diffs only as "changed"
    CONTAINERD_CONFIG = "config.toml"
    ETC_HOSTS = "etc-hosts"  # nodecfg's block in the node's /etc/hosts


@dataclass(frozen=True)
class DesiredFile:
    """One file as nodecfg would write it; `path` is the path containerd sees on the host."""

    path: str
    content: bytes
    mode: int | None  # None: keep the mode the file has on the node (0644 for a new file)
    kind: FileKind
