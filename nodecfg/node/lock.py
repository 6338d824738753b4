"""Locks in the state dir: an flock with the holder written inside it.

Two locks, both `StateLock`s:

- the node lock (`lock`): held by every command while it changes the node (`apply`, each step of
  `run`, `uninstall`), so two writers never share temp files or the journal;
- the daemon lock (`daemon.lock`): held by `run` for its whole life and by `uninstall`, so one
  daemon runs per node and uninstall never races a daemon that would put nodecfg straight back.

Reads (`diff`, `explain`, `doctor`, `status`, ...) take neither: every file they read is written
by atomic rename, so they see the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from nodecfg.node.fs import NodeError

NODE_LOCK = "lock"
DAEMON_LOCK = "daemon.lock"
# Longer than the daemon's longest step under the node lock: a containerd restart (2 min), its
# health wait (restart.healthTimeout, 1 min by default) and, when unhealthy, the rollback's own.
DEFAULT_WAIT_S = 600.0
POLL_S = 0.05
UNNAMED_TRIES = 100  # ~1 s of looking again before a holder that names nobody is reported as "unknown"


class LockHeld(NodeError):
    """Another nodecfg holds the lock; the message says who."""


class LockWaitStopped(LockHeld):
    """SIGTERM/SIGINT (or the caller's stop) ended the wait for a lock."""


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Waiting:
    """How long to queue behind a holder: until `deadline` (monotonic; None: no limit) or `stop()`."""

    timeout_s: float | None
    deadline: float | None
    stop: Callable[[], bool] = field(default=_never)

    @classmethod
    def up_to(cls, timeout_s: float | None, stop: Callable[[], bool] = _never) -> Waiting:
        """Wait at most `timeout_s` from now (None or 0: no limit, only `stop` ends the wait)."""
        limit = timeout_s if timeout_s else None
        return cls(limit, None if limit is None else time.monotonic() + limit, stop)


class StateLock:
    """A context manager: entering takes the lock (or raises LockHeld naming the holder), leaving gives it up.

    `wait` None: fail at once when held. The kernel drops the flock when the process dies, so a
    kill -9 never leaves the node locked.
    """

    def __init__(self, state_dir_real: str, purpose: str, *, name: str = NODE_LOCK, wait: Waiting | None = None) -> None:
        self.path = os.path.join(state_dir_real, name)
        self.purpose = purpose
        self.wait = wait
        self._fd: int | None = None

    def _named_holder(self) -> str | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                h = json.loads(f.read())
            return f"pid {h['pid']} on {h['host']} ({h['purpose']}, since {h['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            return None  # empty: free again, or its new holder has not written its name yet

    def holder(self) -> str:
        """Who holds the lock, as written by the holder ("unknown" if unreadable)."""
        return self._named_holder() or "unknown"

    def _held(self, why: str, cls: type[LockHeld] = LockHeld, *, holder: str | None = None) -> LockHeld:
        return cls(f"{self.path} is held by {holder or self.holder()} {why}")

    def _open(self) -> int:
        while True:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                continue  # an uninstall removed the state dir in between

    def _still_linked(self, fd: int) -> bool:
        """False when the file was removed (uninstall) or replaced after we opened it: its flock guards nothing."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def _try(self, fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _give_up_or_sleep(self, tries: int) -> None:
        w = self.wait
        if w is None:
            # Read the name once: a second read could meet the holder letting go (name wiped).
            name = self._named_holder()
            if name is None and tries < UNNAMED_TRIES:
                time.sleep(0.01)  # a holder between flock and writing its name, or one letting go: look again
                return
            raise self._held("(--wait queues behind it)", holder=name or "unknown")
        if w.stop():
            raise self._held("and the wait for it was stopped (SIGTERM/SIGINT)", LockWaitStopped)
        if w.deadline is not None and time.monotonic() >= w.deadline:
            raise self._held(f"and stayed held for {w.timeout_s:g}s (--wait-timeout)")
        time.sleep(POLL_S)

    def _take(self) -> int:
        fd = self._open()
        tries = 0
        try:
            while True:
                tries += 1
                if not self._try(fd):
                    self._give_up_or_sleep(tries)
                elif self._still_linked(fd):
                    return fd
                else:  # got the flock of a file an uninstall removed meanwhile: the lock is the file at the path now
                    os.close(fd)
                    fd = -1
                    fd = self._open()
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise

    def __enter__(self) -> StateLock:
        self._fd = self._take()
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "purpose": self.purpose,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, json.dumps(me).encode(), 0)
        except BaseException:
            self.__exit__(None, None, None)  # `with` does not call it when entering fails
            raise
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # nobody is named as holder once it is free
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
