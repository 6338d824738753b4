"""Where containerd's files are by default on a node (host paths), as packages and installers put them.

`config.toml` and the socket are containerd's own defaults (`containerd --config`, `--address`);
`certs.d` is the `config_path` containerd's documentation uses and distributions configure.
"""

from __future__ import annotations

CONFIG_TOML = "/etc/containerd/config.toml"
HOSTS_DIR = "/etc/containerd/certs.d"
SOCKET = "/run/containerd/containerd.sock"
