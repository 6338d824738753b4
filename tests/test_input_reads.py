"""Reading the input and the files it names: special files never block, sizes are capped."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodecfg.node.fs import NodeError, read_file
from nodecfg.node.inputs import MAX_REFERENCED_BYTES
from nodecfg.spec.loader import MAX_INPUT_BYTES
from tests.conftest import node_args, run, tree, unit_daemon

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """A read that blocks (the bug) fails the test after 20 s instead of hanging the run."""

    def expire(_signum: int, _frame: object) -> None:
        raise TimeoutError("blocked reading a special file")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def special(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A special file of `kind` reached through a symlink (as kubelet's ..data links are)."""
    target = tmp_path / f"real-{kind}"
    if kind == "fifo":
        os.mkfifo(target)
        what = "a FIFO"
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(target))
        what = "a socket"
    elif kind == "directory":
        target.mkdir()
        what = "a directory"
    else:
        target = Path("/dev/null")
        what = "a character device"
    link = tmp_path / f"link-{kind}"
    link.symlink_to(target)
    return link, what


@pytest.mark.parametrize("kind", ["fifo", "socket", "directory", "device"])
def test_read_file_refuses_special_files_without_blocking(tmp_path, kind):
    path, what = special(tmp_path, kind)
    with pytest.raises(NodeError) as e:
        read_file(str(path))
    assert str(e.value) == f"read {path}: {what}, not a regular file"


def test_read_file_caps_the_size(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"x" * 1001)
    assert read_file(str(big), limit=1001).content == b"x" * 1001
    with pytest.raises(NodeError) as e:
        read_file(str(big), limit=1000)
    assert str(e.value) == f"read {big}: larger than 1000 bytes"


def test_fifo_as_config_is_a_clear_error(root, tmp_path):
    path, _ = special(tmp_path, "fifo")
    before = tree(root)
    rc, _, err = run("apply", *node_args(root, path))
    assert rc == 2
    assert err == f"error: read {path}: a FIFO, not a regular file\n"
    assert tree(root) == before


def test_oversized_config_is_refused(root, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_bytes(b"version: 1\n" + b"#" * MAX_INPUT_BYTES)
    rc, _, err = run("validate", *node_args(root, config))
    assert rc == 2
    assert err == f"error: read {config}: larger than {MAX_INPUT_BYTES} bytes\n"


REFERENCES = {
    "caFile": "registries:\n  r.example: {caFile: %s}\n",
    "clientCertFile": "registries:\n  r.example: {clientCertFile: %s}\n",
    "clientKeyFile": "registries:\n  r.example: {clientCertFile: cert.pem, clientKeyFile: %s}\n",
    "passwordFile": "credentials:\n  - {registry: r.example, username: u, passwordFile: %s}\n",
    "usernameFile": "credentials:\n  - {registry: r.example, usernameFile: %s, passwordFile: pw}\n",
    "dockerConfigJSON": "credentials:\n  - dockerConfigJSON: %s\n",
    "authJSON": "credentials:\n  - authJSON: %s\n",
    "k3sRegistries": "credentials:\n  - k3sRegistries: %s\n",
}
LOCATIONS = {
    "caFile": "registries.'r.example'.caFile",
    "clientCertFile": "registries.'r.example'.clientCertFile",
    "clientKeyFile": "registries.'r.example'.clientKeyFile",
}


def referring_config(tmp_path: Path, field: str, path: Path) -> Path:
    (tmp_path / "cert.pem").write_text(CA)
    (tmp_path / "pw").write_text("pw\n")
    config = tmp_path / "c.yaml"
    config.write_text("version: 1\n" + REFERENCES[field] % path)
    return config


@pytest.mark.parametrize("field", sorted(REFERENCES))
def test_fifo_as_referenced_file_is_a_clear_error(root, tmp_path, field):
    path, _ = special(tmp_path, "fifo")
    config = referring_config(tmp_path, field, path)
    before = tree(root)
    rc, _, err = run("apply", *node_args(root, config))
    assert rc == 2
    where = LOCATIONS.get(field, f"credentials[0].{field}")
    assert f"  {where}: cannot read '{path}': a FIFO, not a regular file\n" in err
    assert tree(root) == before


def test_oversized_referenced_file_is_refused(root, tmp_path):
    big = tmp_path / "ca.pem"
    big.write_text(CA + "#" * MAX_REFERENCED_BYTES)
    config = referring_config(tmp_path, "caFile", big)
    rc, _, err = run("validate", *node_args(root, config))
    assert rc == 2
    assert f"registries.'r.example'.caFile: cannot read '{big}': larger than {MAX_REFERENCED_BYTES} bytes" in err


def test_daemon_with_a_fifo_input_reports_it_and_does_not_wedge(root, tmp_path):
    path, _ = special(tmp_path, "fifo")
    daemon = unit_daemon(root, path)
    daemon.sync_input("start")
    assert daemon.readyz().reason == f"error: read {path}: a FIFO, not a regular file"
