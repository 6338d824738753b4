"""Shared helpers: an example node tree under a temp root, whole-tree snapshots, running the CLI."""

from __future__ import annotations

import io
import os
import shutil
import stat
from pathlib import Path

import pytest

from nodecfg.cli import main

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
DEBIAN_CONFIG = (EXAMPLES / "node/etc/containerd/config.toml").read_text()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A node root as Debian's containerd package leaves it."""
    r = tmp_path / "node"
    shutil.copytree(EXAMPLES / "node", r)
    return r


def tree(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under root: relative path -> (mode, content)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = (p.stat().st_mode & 0o777, p.read_bytes())
    return out


def whole_tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Every directory, file and symlink under root: kind and mode, a file's bytes, a link's target.

    Unlike `tree`, a stray empty directory or a changed directory mode shows.
    """
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
    return out


def lived_in(root: Path) -> Path:
    """The example node plus what every real node has: /var/lib (the state dir's parent) and /etc/hosts."""
    (root / "var/lib").mkdir(parents=True, exist_ok=True)
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n")
    (root / "etc/containerd/config.toml").chmod(0o644)
    return root


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Call main() like the shell would; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old = dict(os.environ)
    try:
        if env:
            os.environ.update(env)
        rc = main(list(argv), out, err)
    finally:
        os.environ.clear()
        os.environ.update(old)
    return rc, out.getvalue(), err.getvalue()


def node_args(root: Path, config: Path | str, version: str = "1.6.20") -> list[str]:
    return ["--root", str(root), "--config", str(config), "--containerd-version", version]


def unit_daemon(root: Path, config: Path | str):  # -> nodecfg.daemon.Daemon
    """An in-process daemon on a test node root (no containerd, restarts never carried out)."""
    from nodecfg.daemon import Daemon, Options
    from nodecfg.node.paths import NodePaths
    from nodecfg.node.restart import NoRestart

    return Daemon(
        Options(
            paths=NodePaths(root=str(root)),
            config_path=str(config),
            containerd_version="1.6.20",
            restarter=NoRestart(),
            node_name="n",
        )
    )
