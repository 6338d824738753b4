"""nodecfg: render, diff and apply containerd registry configuration on a node."""

__version__ = "0.1.0"
