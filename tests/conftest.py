"""Shared helpers: an example node tree under a temp root, whole-tree snapshots, running the CLI."""

from __future__ import annotations

import io
import os
import shutil
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
