"""The input watcher wakes the loop for the input, never for the daemon's own writes."""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any

from nodecfg.daemon.watch import Watcher


def _events_within(events: queue.SimpleQueue[tuple[str, Any]], seconds: float) -> list[str]:
    deadline = time.monotonic() + seconds
    out: list[str] = []
    while time.monotonic() < deadline:
        try:
            _kind, paths = events.get(timeout=0.1)
            out += paths
        except queue.Empty:
            continue
    return out


def test_writes_in_the_state_dir_under_a_watched_dir_wake_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    w = Watcher([str(tmp_path)], events, ignore=[str(state)])
    w.start()
    try:
        time.sleep(0.3)  # the watch is set up
        for i in range(20):
            (state / "status.json").write_text(f'{{"n": {i}}}')
        assert _events_within(events, 1.0) == []
        (tmp_path / "registries.yaml").write_text("version: 1\n")
        deadline = time.monotonic() + 10
        seen: list[str] = []
        while not seen and time.monotonic() < deadline:
            seen = _events_within(events, 0.5)
        assert seen and all("state" not in Path(p).parts for p in seen), seen
    finally:
        w.stop()
