"""Which socket nodecfg talks to when --containerd-socket is not given: the one config.toml sets."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from nodecfg.cli.common import paths_from
from nodecfg.containerd import paths as containerd_paths
from nodecfg.containerd.effective import ConfigFile, grpc_address


def _args(root: Path, socket: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(
        root=str(root),
        containerd_config=containerd_paths.CONFIG_TOML,
        hosts_dir=containerd_paths.HOSTS_DIR,
        state_dir="/var/lib/nodecfg",
        containerd_socket=socket,
    )


def _write(root: Path, host_path: str, text: str) -> None:
    p = root / host_path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('version = 2\n[grpc]\n  address = "/run/k3s/containerd/containerd.sock"\n', "/run/k3s/containerd/containerd.sock"),
        ('version = 3\n[grpc]\n  address = "/run/a.sock"\n', "/run/a.sock"),
        # Version 4 (2.3+): the server is a plugin; a top-level [grpc] is not read there.
        (
            "version = 4\n[grpc]\n  address = '/run/old.sock'\n"
            "[plugins.'io.containerd.server.v1.grpc']\n  address = '/run/v4.sock'\n",
            "/run/v4.sock",
        ),
        ("version = 4\n[grpc]\n  address = '/run/old.sock'\n", containerd_paths.SOCKET),
        ("version = 2\n", containerd_paths.SOCKET),
        ("not toml [", containerd_paths.SOCKET),
    ],
)
def test_the_socket_is_the_address_config_toml_sets(tmp_path: Path, text: str, expected: str) -> None:
    _write(tmp_path, containerd_paths.CONFIG_TOML, text)
    assert paths_from(_args(tmp_path)).containerd_socket == expected


def test_a_drop_in_sets_the_socket_and_the_flag_wins(tmp_path: Path) -> None:
    _write(tmp_path, containerd_paths.CONFIG_TOML, 'version = 2\nimports = ["/etc/containerd/conf.d/*.toml"]\n')
    _write(tmp_path, "/etc/containerd/conf.d/10-socket.toml", 'version = 2\n[grpc]\n  address = "/run/drop-in.sock"\n')
    assert paths_from(_args(tmp_path)).containerd_socket == "/run/drop-in.sock"
    assert paths_from(_args(tmp_path, "/run/flag.sock")).containerd_socket == "/run/flag.sock"


def test_grpc_address_takes_the_last_file_that_sets_one() -> None:
    files = [
        ConfigFile("/m.toml", {"version": 2, "grpc": {"address": "/a.sock"}}),
        ConfigFile("/d1.toml", {"version": 2, "grpc": {"uid": 0}}),
        ConfigFile("/d2.toml", {"version": 2, "grpc": {"address": "/b.sock"}}),
    ]
    assert grpc_address(files) == "/b.sock"
    assert grpc_address(files[:2]) == "/a.sock"
    assert grpc_address([]) is None
