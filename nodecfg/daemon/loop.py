"""The daemon's loop: one thread owns the node; events, signals and the resync timer only wake it.

The watcher thread, signal handlers and the resync timer only put events on a queue; the HTTP
thread only reads a snapshot. Each step runs under the node lock (`_locked`): following the input
(`sync_input`) or carrying out a due restart (`restarts.Restarts`).
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import structlog

from nodecfg.daemon.files import StateFiles
from nodecfg.daemon.live import LiveContainerd
from nodecfg.daemon.metrics import Metrics
from nodecfg.daemon.mirrors import MirrorChecker
from nodecfg.daemon.restarts import Restarts
from nodecfg.daemon.server import ListenError, ProbeAnswer, Server
from nodecfg.daemon.watch import Watcher
from nodecfg.node.fs import NodeError
from nodecfg.node.inputs import watched_dirs
from nodecfg.node.lock import DAEMON_LOCK, DEFAULT_WAIT_S, LockHeld, LockWaitStopped, StateLock, Waiting
from nodecfg.node.paths import NodePaths
from nodecfg.node.reconcile import Prepared
from nodecfg.node.restart import Restarter
from nodecfg.node.status import DaemonStatus, MirrorStatus, daemon_mirrors

log = structlog.get_logger("nodecfg")


@dataclass(frozen=True)
class Options:
    """How the daemon runs (from the command line)."""

    paths: NodePaths
    config_path: str
    containerd_version: str | None
    restarter: Restarter
    node_name: str
    resync_s: float = 300.0
    listen: tuple[str, int] | None = None
    env: Mapping[str, str] | None = None
    wait_for_lock: bool = False  # queue behind another daemon instead of exiting
    lock_timeout_s: float = DEFAULT_WAIT_S  # for that, and for each step's node lock (0: no limit)
    input_format: str = "auto"


@dataclass
class Snapshot:
    """What the HTTP thread and `nodecfg status` see; replaced whole, never mutated in place."""

    ready: bool = False
    reason: str = "starting"
    last: dict[str, Any] = field(default_factory=dict)


class DaemonLoop:
    """The loop and what it owns: the queue, the watcher, the HTTP server, the status. `run()` returns the exit code.

    `sync.Daemon` adds the step that follows the input; this class knows nothing of inputs.
    """

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.paths = opts.paths
        self.state_real = self.paths.real(self.paths.state_dir)
        self.files = StateFiles(self.state_real)
        self.events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.metrics = Metrics()
        self.snapshot = Snapshot()
        self.alive_at = time.monotonic()
        self.watcher: Watcher | None = None
        self.server: Server | None = None
        self.stop_requested = threading.Event()
        self.containerd = LiveContainerd(self.paths)
        self.restarts = Restarts(
            self.paths,
            self.files,
            self.containerd,
            opts.restarter,
            node_name=opts.node_name,
            stop=self.stop_requested.is_set,
            report=self._restart_over,
            metrics=self.metrics,
        )
        self.mirrors = MirrorChecker(self.paths, lambda t: self.events.put(("mirror", t)))
        self.metrics.watch_mirrors(self.mirrors.samples)
        self.routed_out: frozenset[tuple[str, str]] = frozenset()

    def sync_input(self, reason: str) -> None:
        """Follow the input once (`reason`: start, change, resync, sighup, mirror-health); see sync.Daemon."""
        raise NotImplementedError

    # ---------------------------------------------------------------- status

    def _set(self, *, ready: bool, reason: str, last: dict[str, Any] | None = None) -> None:
        """Replace the snapshot and write status.json (a failure to write is logged, nothing more)."""
        self.snapshot = Snapshot(ready, reason, last if last is not None else self.snapshot.last)
        pending = self.restarts.pending
        self.metrics.node_state(ready=ready, pending_since=pending.since if pending else None)
        mirrors = tuple(
            MirrorStatus.from_json({**v, "inHostsToml": (v["registry"], v["url"]) not in self.routed_out})
            for v in self.mirrors.view()
        )
        status = DaemonStatus(
            node=self.opts.node_name,
            pid=os.getpid(),
            ready=ready,
            reason=reason,
            restart_pending=pending is not None,
            restart_policy=self.restarts.policy,
            restart_method=self.opts.restarter.name,
            bad_inputs=dict(self.restarts.bad),
            mirrors=mirrors,
            last=self.snapshot.last,
            updated=time.time(),
        )
        try:
            self.files.write_status(status)
        except (OSError, NodeError) as e:
            log.error("status", error=str(e))

    def _restart_over(self, ready: bool, reason: str, outcome: str) -> None:
        """A restart finished (`outcome`: done, not-needed, rolled-back): the last reconcile says so."""
        self._set(ready=ready, reason=reason, last={**self.snapshot.last, "restart": outcome, "time": time.time()})

    # ---------------------------------------------------------------- probes and signals

    def _rewatch(self, prepared: Prepared | None) -> None:
        dirs = watched_dirs(self.opts.config_path, prepared.config if prepared else None)
        if self.watcher is not None and self.watcher.dirs == dirs:
            return
        if self.watcher is not None:
            self.watcher.stop()
        self.watcher = Watcher(dirs, self.events, ignore=[self.state_real])
        self.watcher.start()

    def healthz(self) -> ProbeAnswer:
        """The loop is alive (it wakes at least every few seconds, or is busy with a restart)."""
        now = time.monotonic()
        idle = now - self.alive_at
        if idle < 30 or now < self.restarts.busy_until:
            return ProbeAnswer(True, f"loop alive ({idle:.1f}s ago)")
        return ProbeAnswer(False, f"reconcile loop silent for {idle:.0f}s")

    def readyz(self) -> ProbeAnswer:
        """The current input is applied and containerd is healthy with it."""
        s = self.snapshot
        return ProbeAnswer(s.ready, s.reason)

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.events.put(("hup", None))
            return
        self.stop_requested.set()  # seen by a restart or health wait in progress
        self.events.put(("stop", signal.Signals(signum).name))

    # ---------------------------------------------------------------- run

    def run(self) -> int:
        """Lock, recover, reconcile, then follow the input until SIGTERM/SIGINT."""
        # Handlers first: SIGTERM must also end a wait for another daemon's lock.
        old = {s: signal.signal(s, self._signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        wait = Waiting.up_to(self.opts.lock_timeout_s, self.stop_requested.is_set) if self.opts.wait_for_lock else None
        try:
            with StateLock(self.state_real, f"nodecfg run on {self.opts.node_name}", name=DAEMON_LOCK, wait=wait):
                self._serve()
            return 0
        except LockWaitStopped:
            log.info("stopping", detail="stopped while waiting for another daemon to exit")
            return 0
        except ListenError as e:
            log.error("cannot-listen", error=str(e))
            return 2
        finally:
            self.mirrors.stop()
            if self.watcher is not None:
                self.watcher.stop()
            if self.server is not None:
                self.server.stop()
            for s, h in old.items():
                signal.signal(s, h)

    def _serve(self) -> None:
        if self.opts.listen is not None:
            self.server = Server(*self.opts.listen, self.healthz, self.readyz, self.metrics.render)
            self.server.start()
            log.info("listening", address=f"{self.opts.listen[0]}:{self.server.port}")
        self.restarts.load()
        self.mirrors.seed([m.to_json() for m in daemon_mirrors(self.state_real)])
        if self.restarts.rollback_interrupted():
            # Killed in the middle of a rollback: finish it before anything else.
            self._locked(self.restarts.finish_rollback)
        self._locked(self.sync_input, "start")
        self._rewatch_if_missing()
        self.mirrors.start()
        self._loop()

    def _locked(self, step: Callable[..., None], *args: Any) -> None:
        """Run a loop step that may change the node under the node lock, queueing behind a manual apply.

        Held per step, not for the daemon's life, so `apply --wait` and `uninstall` get their turn.
        A holder that does not let go within --wait-timeout costs this step only: it is logged, the
        node is not ready, and the next event or resync tries again.
        """
        wait = Waiting.up_to(self.opts.lock_timeout_s, self.stop_requested.is_set)
        try:
            with StateLock(self.state_real, f"nodecfg run on {self.opts.node_name}", wait=wait):
                self._guarded(step, *args)
        except LockWaitStopped:
            return  # SIGTERM: the loop stops next
        except LockHeld as e:
            log.error("lock", error=str(e))
            self._set(ready=False, reason=str(e))

    def _guarded(self, step: Callable[..., None], *args: Any) -> None:
        """Run a loop step; a bug in it is logged and makes the node not ready, nothing more.

        The daemon keeps running: the next event or resync tries again.
        """
        try:
            step(*args)
        except Exception as e:
            log.exception("internal-error", step=getattr(step, "__name__", "?"), error=f"{type(e).__name__}: {e}")
            self._set(ready=False, reason=f"internal error in {getattr(step, '__name__', '?')}: {type(e).__name__}: {e}")

    def _rewatch_if_missing(self) -> None:
        if self.watcher is None:  # the first reconcile failed before it knew the input
            self._rewatch(None)

    def _stopping(self, signal_name: str | None = None) -> None:
        if signal_name is None:
            log.info("stopping", restart_pending=self.restarts.pending is not None)
        else:
            log.info("stopping", signal=signal_name, restart_pending=self.restarts.pending is not None)

    def _drain(self) -> str | None:
        """Coalesce whatever else is already queued into the next step; the stop signal among it, if any."""
        stop = None
        while True:
            try:
                k, d = self.events.get_nowait()
            except queue.Empty:
                return stop
            if k == "stop":
                stop = d

    def _loop(self) -> None:
        next_resync = time.monotonic() + self.opts.resync_s
        while True:
            self.alive_at = now = time.monotonic()
            if self.stop_requested.is_set():  # also when a restart step saw it before the queue did
                return self._stopping()
            due = self.restarts.due()
            if due and now >= due:
                self._locked(self.restarts.restart_now)
                continue
            wake = [next_resync, now + 5.0, *([due] if due else [])]
            try:
                kind, detail = self.events.get(timeout=max(0.0, min(wake) - now))
            except queue.Empty:
                if time.monotonic() >= next_resync:
                    self._locked(self.sync_input, "resync")
                    next_resync = time.monotonic() + self.opts.resync_s
                continue
            if kind == "stop":
                return self._stopping(detail)
            stop = self._drain()
            self._locked(self.sync_input, {"hup": "sighup", "mirror": "mirror-health"}.get(kind, "change"))
            if kind == "hup":
                next_resync = time.monotonic() + self.opts.resync_s
            if stop is not None:
                return self._stopping(stop)
