"""Watch the input's directories (kubelet's `..data` swaps included) and wake the reconcile loop."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Sequence
from typing import Any

import structlog
import watchfiles

log = structlog.get_logger("nodecfg")

# After the first event, wait this long for more before waking the loop (kubelet's swap is a
# burst of a few events within a millisecond or two). Cold changes have their own, longer settle.
STEP_MS = 15
MAX_BATCH_MS = 100


class Watcher:
    """A thread that puts ("change", paths) on `events` whenever a watched directory changes."""

    def __init__(self, dirs: list[str], events: queue.SimpleQueue[tuple[str, Any]], ignore: Sequence[str] = ()) -> None:
        self.dirs = list(dirs)
        self._events = events
        # The daemon's own files (its state dir under a watched directory): their writes are not
        # input changes, and reacting to them would wake the loop with every status write.
        self._ignore = tuple({v for p in ignore for v in (os.path.abspath(p), os.path.realpath(p))})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nodecfg-watch", daemon=True)

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and wait for the thread (it notices within about 100 ms)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _wanted(self, _change: Any, path: str) -> bool:
        return not any(path == i or path.startswith(i + os.sep) for i in self._ignore)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for changes in watchfiles.watch(
                    *self.dirs,
                    watch_filter=self._wanted,
                    debounce=MAX_BATCH_MS,
                    step=STEP_MS,
                    stop_event=self._stop,
                    rust_timeout=100,
                    yield_on_timeout=False,
                    raise_interrupt=False,
                ):
                    self._events.put(("change", sorted({p for _c, p in changes})))
            except (OSError, RuntimeError) as e:
                # A watched directory vanished (a volume remounted): the loop's resync still runs;
                # try again shortly.
                log.warning("watch", error=str(e), dirs=self.dirs)
                self._events.put(("change", []))
                self._stop.wait(1.0)
