"""The `config dump` check's edges that need no containerd: quoted values, scratch copies, binaries that cannot run."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path

from nodecfg.node.containerd import SCRATCH_PREFIX, _sweep_scratch, _without_values, check_loaded, check_with_containerd
from nodecfg.node.paths import NodePaths


def test_a_1x_conversion_error_keeps_the_type_and_drops_the_value() -> None:
    line = "containerd: (7, 3): Can't convert 31415926535(int64) to string"
    assert _without_values(line) == "containerd: (7, 3): Can't convert a int64 value to string"
    array = "containerd: (3, 1): Can't convert [PW-5 (x) 1]([]interface {}) to string"
    assert "PW-5" not in _without_values(array) and "[]interface {}" in _without_values(array)


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_a_binary_that_does_not_run_here_leaves_the_judgement_to_the_model(tmp_path: Path) -> None:
    broken = _script(tmp_path / "containerd", "echo 'version GLIBC_2.38 not found' >&2; exit 1\n")
    (tmp_path / "c.toml").write_text("version = 2\n")
    check = check_with_containerd(broken, str(tmp_path / "c.toml"), "/etc/containerd/certs.d", frozenset())
    assert not check.ran and not check.problems


def test_a_refusal_names_the_hosts_files_not_the_copies(tmp_path: Path) -> None:
    # A stand-in binary that fails on `config dump` quoting the file it was given, as containerd does.
    fake = _script(
        tmp_path / "containerd",
        'if [ "$1" = --version ]; then echo containerd x 2.3.4; exit 0; fi\n'
        'echo "containerd: failed to load TOML from $2: bad" >&2; exit 1\n',
    )
    check = check_loaded(fake, "version = 2\n", [], NodePaths(root=str(tmp_path)), frozenset())
    assert check.ran and check.problems == (
        "containerd rejects the candidate config.toml: containerd: failed to load TOML from /etc/containerd/config.toml: bad",
    )


def test_scratch_copies_of_processes_that_are_gone_are_swept(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"{SCRATCH_PREFIX}{dead.pid}-abc"
    live = tmp_path / f"{SCRATCH_PREFIX}{os.getpid()}-def"
    other = tmp_path / "unrelated"
    for d in (stale, live, other):
        d.mkdir()
        (d / "config.toml").write_text("password = 'x'\n")
    _sweep_scratch(str(tmp_path))
    assert not stale.exists() and live.exists() and other.exists()


def test_no_scratch_copy_is_left_behind(tmp_path: Path) -> None:
    fake = _script(tmp_path / "containerd", 'echo "[plugins]"\n')
    before = {n for n in os.listdir(tempfile.gettempdir()) if n.startswith(f"{SCRATCH_PREFIX}{os.getpid()}-")}
    check_loaded(fake, "version = 2\n", [], NodePaths(root=str(tmp_path)), frozenset())
    after = {n for n in os.listdir(tempfile.gettempdir()) if n.startswith(f"{SCRATCH_PREFIX}{os.getpid()}-")}
    assert after == before
