"""`nodecfg run`: follow the input, apply hot changes at once, restart containerd safely for cold ones.

One thread owns the node: the loop (loop.py). The watcher thread, signal handlers and the resync
timer only put events on a queue; the HTTP thread (server.py) only reads a snapshot. Every step
that matters after a crash is on disk before it is taken: the apply journal (node/), and here the
config.toml containerd last ran healthy with, the pending restart and the inputs that were rolled
back (files.py).

- loop.py: the event loop, signals, the node lock per step, probes, status.json.
- sync.py: `Daemon`, the step that follows the input.
- restarts.py: the restart state machine (pending, scheduled, restart, health wait, rollback).
- live.py: containerd on this node, as the restart state machine and the step see it.
- files.py: the daemon's files in the state dir.
- mirrors.py, watch.py, metrics.py, server.py: mirror health, input watching, /metrics, HTTP.
"""

from __future__ import annotations

from nodecfg.daemon.files import BAD_INPUTS_FILE, GOOD_CONFIG_FILE, PENDING_FILE, Pending, StateFiles
from nodecfg.daemon.loop import Options, Snapshot
from nodecfg.daemon.restarts import MAX_SETTLE_S, SETTLE_S, Restarts, Stopping, failpoint, input_hash, spread_delay
from nodecfg.daemon.sync import Daemon

__all__ = [
    "BAD_INPUTS_FILE",
    "GOOD_CONFIG_FILE",
    "MAX_SETTLE_S",
    "PENDING_FILE",
    "SETTLE_S",
    "Daemon",
    "Options",
    "Pending",
    "Restarts",
    "Snapshot",
    "StateFiles",
    "Stopping",
    "failpoint",
    "input_hash",
    "spread_delay",
]
