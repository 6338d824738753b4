"""Where things are on the node: the host paths nodecfg reads and writes, and the root they sit under.

The CLI and the daemon take their defaults from here; containerd's own places come from
containerd/paths, the /etc/hosts path from render/etc_hosts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from nodecfg.containerd import paths as containerd_paths
from nodecfg.node.fs import host_path
from nodecfg.render.etc_hosts import ETC_HOSTS

__all__ = ["ETC_HOSTS", "NodePaths"]  # ETC_HOSTS: host path of the file `hostAliases` edits


@dataclass(frozen=True)
class NodePaths:
    """Where things are: `root` is where the host's / is mounted; the rest are host paths."""

    root: str = "/"
    containerd_config: str = containerd_paths.CONFIG_TOML
    hosts_dir: str = containerd_paths.HOSTS_DIR
    state_dir: str = "/var/lib/nodecfg"
    containerd_socket: str = containerd_paths.SOCKET

    def real(self, host: str) -> str:
        """The path this process opens for host path `host`."""
        return host_path(self.root, host)

    def host(self, real: str) -> str:
        """Inverse of `real` for a path under the root."""
        root = os.path.abspath(self.root)
        return real if root == "/" else "/" + os.path.relpath(real, root)
