"""One nodecfg per node: an flock on `<state dir>/lock`, with the holder written inside it."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from types import TracebackType

from nodecfg.node.fs import NodeError

LOCK_FILE = "lock"


class LockHeld(NodeError):
    """Another nodecfg holds the lock; the message says who."""


class StateLock:
    """Held from `acquire()` until `release()` (or the process ends: the kernel drops flocks)."""

    def __init__(self, state_dir_real: str, purpose: str) -> None:
        self.path = os.path.join(state_dir_real, LOCK_FILE)
        self.purpose = purpose
        self._fd: int | None = None

    def holder(self) -> str:
        """Who holds the lock, as written by the holder ("unknown" if unreadable)."""
        try:
            with open(self.path, encoding="utf-8") as f:
                h = json.loads(f.read() or "{}")
            return f"pid {h['pid']} on {h['host']} ({h['purpose']}, since {h['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            return "unknown"

    def acquire(self, *, wait: bool = False, poll: float = 0.2) -> None:
        """Take the lock; raise LockHeld naming the holder unless `wait`."""
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    os.close(fd)
                    raise LockHeld(f"another nodecfg holds {self.path}: {self.holder()} (use --wait to wait for it)") from None
                time.sleep(poll)
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "purpose": self.purpose,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
