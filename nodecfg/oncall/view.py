"""The node as explain and doctor see it (pure values, read by node/view.py).

config.toml's registry settings and every directory under every hosts root.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from nodecfg.containerd.config_toml import RegistrySettings
from nodecfg.containerd.versions import ContainerdTarget


@dataclass(frozen=True)
class HostsDir:
    """One directory under a config_path root, as read from the node."""

    path: str  # host path
    hosts_toml: str | None  # None: no hosts.toml in it
    error: str | None = None  # why hosts.toml could not be read
    cert_files: tuple[str, ...] = ()  # *.crt / *.cert / *.key: Docker's layout, used without hosts.toml
    owned: bool = False


@dataclass(frozen=True)
class NodeView:
    """What explain and doctor need from the node, read by the node layer."""

    target: ContainerdTarget
    registry: RegistrySettings
    dirs: Mapping[str, HostsDir]  # host path -> directory, for every directory under every root
    missing: Mapping[str, str] = field(default_factory=dict)  # referenced file -> why it cannot be read
