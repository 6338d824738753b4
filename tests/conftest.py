"""Shared helpers: an example node tree under a temp root, whole-tree snapshots, running the CLI."""

from __future__ import annotations

import http.server
import io
import os
import shutil
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


# Servers that fail the ways a mirror fails, on 127.0.0.1, each as "127.0.0.1:<port>".


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts every connection, reads the request, never answers (a hung registry, a proxy with no backend)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _addr = listener.accept()
            except OSError:
                return  # closed at the end of the test
            held.append(conn)
            threading.Thread(target=lambda c=conn: _drain(c), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for conn in held:
            conn.close()


def _drain(conn: socket.socket) -> None:
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass


@contextmanager
def status_server(status: Callable[[str], int]) -> Iterator[str]:
    """A local HTTP server answering every GET with `status(path)` and no body; yields host:port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status(self.path))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def unavailable_server() -> Iterator[str]:
    """Answers every request with 503 Service Unavailable."""
    with status_server(lambda _path: 503) as address:
        yield address


@pytest.fixture
def refusing_port() -> Iterator[str]:
    """A port that is bound and never listens: every connection is refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    try:
        yield f"127.0.0.1:{s.getsockname()[1]}"
    finally:
        s.close()
