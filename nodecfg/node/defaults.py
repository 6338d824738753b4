"""Defaults of the containerd socket, the D-Bus system bus and the containerd unit: their one owner.

Kept apart from node/cri (grpc) and node/restart (jeepney), which use them, so that the CLI's
parser can show them without importing either; the one-shot commands need neither.
"""

from __future__ import annotations

from nodecfg.node.paths import NodePaths

DEFAULT_SOCKET = NodePaths.containerd_socket  # the host path of containerd's socket, where NodePaths keeps it
DEFAULT_SYSTEM_BUS = "/run/dbus/system_bus_socket"
DEFAULT_UNIT = "containerd.service"
