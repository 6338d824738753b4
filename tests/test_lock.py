"""The node lock and the daemon lock: who holds them, queueing behind them, and giving up (finding 1 of #13)."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nodecfg.node.lock import DAEMON_LOCK, LockHeld, LockWaitStopped, StateLock, Waiting
from tests.conftest import REPO, node_args, run, tree
from tests.test_apply import copy_example

STATE = "var/lib/nodecfg"


def release_later(lock: StateLock, after_s: float) -> threading.Thread:
    t = threading.Thread(target=lambda: (time.sleep(after_s), lock.__exit__(None, None, None)))
    t.start()
    return t


def test_a_waiter_gives_up_after_its_timeout_naming_the_holder(tmp_path: Path) -> None:
    with StateLock(str(tmp_path), "holder"):
        started = time.monotonic()
        gave_up = rf"is held by pid {os.getpid()} .*holder.*stayed held for 0.3s"
        with pytest.raises(LockHeld, match=gave_up), StateLock(str(tmp_path), "waiter", wait=Waiting.up_to(0.3)):
            pass
        assert 0.3 <= time.monotonic() - started < 2


def test_a_waiter_stops_when_asked(tmp_path: Path) -> None:
    asked = threading.Event()
    threading.Timer(0.2, asked.set).start()
    waiter = StateLock(str(tmp_path), "waiter", wait=Waiting.up_to(None, asked.is_set))
    with StateLock(str(tmp_path), "holder"), pytest.raises(LockWaitStopped, match="wait for it was stopped"), waiter:
        pass


def test_a_waiter_gets_the_lock_when_it_is_released(tmp_path: Path) -> None:
    holder = StateLock(str(tmp_path), "holder").__enter__()
    t = release_later(holder, 0.2)
    with StateLock(str(tmp_path), "waiter", wait=Waiting.up_to(10)) as mine:
        assert "waiter" in mine.holder()
    t.join()


def test_a_holder_that_names_nobody_is_looked_at_again_before_failing(tmp_path: Path) -> None:
    """Between a holder's flock and its name (or as it lets go) the file is empty: that is no reason to fail."""
    fd = os.open(tmp_path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    threading.Timer(0.2, os.close, (fd,)).start()
    with StateLock(str(tmp_path), "second") as second:  # no --wait, yet it gets the lock
        assert "second" in second.holder()


def test_the_refusal_names_the_holder_it_saw_even_if_that_holder_lets_go_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is read once: a holder wiping its name as it lets go must not turn into "held by unknown"."""
    fd = os.open(tmp_path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    reads = iter(["pid 4242 on node-a (apply, since 2026-12-02T06:00:00Z)"])
    monkeypatch.setattr(StateLock, "_named_holder", lambda self: next(reads, None))  # then the name is gone
    try:
        with pytest.raises(LockHeld, match=r"held by pid 4242 on node-a \(apply"), StateLock(str(tmp_path), "second"):
            pass
    finally:
        os.close(fd)


def test_a_lock_file_removed_under_a_waiter_is_not_trusted(tmp_path: Path) -> None:
    """uninstall removes the state dir, lock files included, while an `apply --wait` queues behind it."""
    state = tmp_path / "state"
    holder = StateLock(str(state), "uninstall").__enter__()
    got: list[StateLock] = []
    waiter = threading.Thread(
        target=lambda: got.append(StateLock(str(state), "apply", wait=Waiting.up_to(10)).__enter__()),
    )
    waiter.start()
    time.sleep(0.2)  # the waiter has opened the old file and polls it
    shutil.rmtree(state)
    holder.__exit__(None, None, None)
    waiter.join()
    # The waiter holds the file that is at the path now, so a newcomer sees it held.
    with pytest.raises(LockHeld, match=r"\(apply, since"), StateLock(str(state), "newcomer"):
        pass
    got[0].__exit__(None, None, None)


def test_apply_while_the_node_is_locked_fails_cleanly_or_queues(root: Path, tmp_path: Path) -> None:
    config = copy_example(tmp_path, "dockerhub-mirror.yaml")
    before = tree(root)
    with StateLock(str(root / STATE), "test holder") as held:
        rc, _out, err = run("apply", *node_args(root, config))
        assert rc == 2
        assert f"is held by pid {os.getpid()}" in err and "(test holder, since" in err and "--wait" in err
        assert "Traceback" not in err
        rc, _out, err = run("apply", *node_args(root, config), "--wait", "--wait-timeout", "300ms")
        assert rc == 2 and "stayed held for 0.3s (--wait-timeout)" in err
        assert {k: v for k, v in tree(root).items() if not k.startswith(STATE)} == before
        t = release_later(held, 0.3)
        rc, out, err = run("apply", *node_args(root, config), "--wait")
        assert rc == 0, err
        assert "write /etc/containerd/certs.d/docker.io/hosts.toml" in out
        t.join()


def test_uninstall_refuses_while_a_daemon_runs(root: Path, tmp_path: Path) -> None:
    config = copy_example(tmp_path, "dockerhub-mirror.yaml")
    assert run("apply", *node_args(root, config))[0] == 0
    with StateLock(str(root / STATE), "nodecfg run on n1", name=DAEMON_LOCK):
        rc, _out, err = run("uninstall", *node_args(root, config), "--restart-method", "none")
        assert rc == 2 and "daemon.lock is held by pid" in err and "(nodecfg run on n1, since" in err
        assert (root / "etc/containerd/certs.d/docker.io/hosts.toml").exists()
        # A dry run only reads: no lock.
        rc, out, _err = run("uninstall", *node_args(root, config), "--restart-method", "none", "--dry-run")
        assert rc == 0 and "dry run: 2 change(s) not made" in out


def _has_open(pid: int, path: Path) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fds / fd) == str(path) for fd in os.listdir(fds))
    except OSError:
        return False


def test_sigterm_ends_apply_wait_with_a_message(root: Path, tmp_path: Path) -> None:
    config = copy_example(tmp_path, "dockerhub-mirror.yaml")
    lock = root / STATE / "lock"
    with StateLock(str(root / STATE), "test holder"):
        argv = [sys.executable, "-m", "nodecfg", "apply", *node_args(root, config), "--wait", "--wait-timeout", "0"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        deadline = time.monotonic() + 30
        while not _has_open(proc.pid, lock):  # queued behind us now
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 2
    assert "is held by pid" in err and "wait for it was stopped (SIGTERM/SIGINT)" in err
    assert "Traceback" not in err
    assert not (root / "etc/containerd/certs.d").exists()
