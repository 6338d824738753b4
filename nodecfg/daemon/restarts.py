"""The restart state machine: a cold change is kept pending, restarted once per burst, checked, kept or rolled back.

States (docs/daemon.md, "What happens on a change"): no restart pending; pending (config.toml
written, the good one kept, `pending-restart.json` on disk) and maybe scheduled; restarting and
waiting for health; then done (the pending file and the good config go) or rolled back (the input
is recorded as bad first, the good config.toml is put back, containerd restarted again). Each
transition is on disk before it is taken, so a daemon killed anywhere finishes it at its next
start. Containerd and the restart method are injected (`Containerd`, `CanRestart`), so the tests
drive all of this without either.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from nodecfg.daemon.files import Pending, StateFiles
from nodecfg.daemon.metrics import Metrics
from nodecfg.node.cri import Health
from nodecfg.node.fs import atomic_write, read_file
from nodecfg.node.paths import NodePaths
from nodecfg.node.reconcile import Prepared
from nodecfg.node.restart import RESTART_TIMEOUT_S, NoRestart, RestartError, RestartInterrupted
from nodecfg.node.status import BadInput

log = structlog.get_logger("nodecfg")

SETTLE_S = 1.0  # a cold change waits this long for the rest of its burst before the restart
MAX_SETTLE_S = 30.0  # ... but a steady stream of changes cannot postpone it longer than this

Running = tuple[int, float]  # the process serving containerd's socket: (pid, start time)
Stop = Callable[[], bool]
Report = Callable[[bool, str, str], None]  # (ready, reason, restart outcome) once a restart is over


class Stopping(Exception):
    """SIGTERM/SIGINT arrived while a restart or its health wait was under way."""


class Containerd(Protocol):
    """What the state machine needs to see of containerd (`live.LiveContainerd` on a node)."""

    def wait_healthy(self, timeout: float, good: Callable[[Health], bool], stop: Stop) -> Health:
        """Poll CRI health until `good(health)`, `timeout` seconds, or `stop()`; the last answer."""
        ...

    def running(self) -> Running | None:
        """Who serves containerd's socket now, or None when this process cannot see it."""
        ...

    def not_loaded(self, h: Health, *, restarted: bool) -> str | None:
        """Why containerd does not run with what nodecfg wrote, or None when it does."""
        ...


class CanRestart(Protocol):
    """A restart method (`node.restart.Restarter`)."""

    @property
    def name(self) -> str:
        """The method's name, for status and logs."""
        ...

    def restart(self, timeout: float, stop: Stop) -> None:
        """Restart containerd; RestartError when that fails, RestartInterrupted on `stop()`."""
        ...


def failpoint(name: str) -> None:
    """Crash-test hook: SIGKILL this process at step `name` when NODECFG_FAILPOINT names it.

    The daemon's crash-safety tests kill it at every step this way (deterministic, unlike timed
    kills); nothing else sets the variable.
    """
    if os.environ.get("NODECFG_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def input_hash(prepared: Prepared) -> str:
    """Identifies what an input renders to: a rolled-back input is not retried until this changes.

    Taken with every mirror in rotation, so mirrors going out and back do not make it new.
    """
    h = hashlib.sha256()
    for f in sorted(prepared.rendered.unrouted_files, key=lambda f: f.path):
        h.update(f.path.encode() + b"\0" + hashlib.sha256(f.content).digest())
    return h.hexdigest()[:16]


def spread_delay(node_name: str, spread_s: float) -> float:
    """A stable per-node delay in [0, spread): nodes of a fleet restart at different times."""
    if spread_s <= 0:
        return 0.0
    frac = int.from_bytes(hashlib.sha256(node_name.encode()).digest()[:8], "big") / 2**64
    return spread_s * frac


class Restarts:
    """The pending restart of one node and everything that finishes it; see the module doc."""

    def __init__(
        self,
        paths: NodePaths,
        files: StateFiles,
        containerd: Containerd,
        restarter: CanRestart,
        *,
        node_name: str,
        stop: Stop,
        report: Report,
        metrics: Metrics | None = None,
        settle_s: float = SETTLE_S,
        max_settle_s: float = MAX_SETTLE_S,
        restart_timeout_s: float = RESTART_TIMEOUT_S,
    ) -> None:
        self.paths = paths
        self.files = files
        self.containerd = containerd
        self.restarter = restarter
        self.node_name = node_name
        self.stop = stop
        self.report = report
        self.metrics = metrics or Metrics()
        self.settle_s, self.max_settle_s, self.restart_timeout_s = settle_s, max_settle_s, restart_timeout_s
        self.pending: Pending | None = None
        self.bad: dict[str, BadInput] = {}
        self.policy = "auto"
        self.spread_s = 0.0
        self.health_timeout_s = 60.0
        self.busy_until = 0.0  # monotonic: a restart blocks the loop until then at most

    def configure(self, policy: str, spread_s: float, health_timeout_s: float) -> None:
        """The input's `restart` settings, as of the last input read."""
        self.policy, self.spread_s, self.health_timeout_s = policy, spread_s, health_timeout_s

    # ---------------------------------------------------------------- what is on disk

    def load(self) -> None:
        """At start: the bad inputs so far and the restart a previous daemon left pending."""
        self.bad = self.files.read_bad()
        self.pending = self.files.read_pending()
        if self.pending is not None:
            log.warning("pending-restart", detail="a config.toml change from before this start is not yet loaded by containerd")

    def rollback_interrupted(self) -> bool:
        """A previous daemon was killed in the middle of a rollback (its input is bad, its restart still pending)."""
        return self.pending is not None and self.pending.input_hash in self.bad

    def finish_rollback(self) -> None:
        """Finish the interrupted rollback before anything else."""
        assert self.pending is not None
        self.rollback(self.pending, Health(False, ("a rollback was interrupted",)), time.monotonic())

    def bad_input(self, digest: str) -> BadInput | None:
        """Why and when this input was rolled back, or None when it was not."""
        return self.bad.get(digest)

    def before_cold_write(self, digest: str) -> None:
        """Before the first cold write of a burst: keep the config.toml containerd runs with."""
        if self.pending is not None:
            return
        info = read_file(self.paths.real(self.paths.containerd_config))
        if info.content is not None:
            self.files.write_good(info.content)
        self.pending = Pending(digest, info.content is not None, self.containerd.running())
        self.files.write_pending(self.pending)
        failpoint("after-good-kept")

    def after_cold_write(self, digest: str) -> None:
        """config.toml now holds input `digest`: the containerd running now has not loaded it."""
        assert self.pending is not None
        self.pending.input_hash = digest
        self.pending.containerd = self.containerd.running()
        self.files.write_pending(self.pending)
        failpoint("after-cold-write")

    def clear(self) -> None:
        """The restart is over: nothing pending, the kept config.toml goes."""
        self.pending = None
        self.files.clear_pending()

    # ---------------------------------------------------------------- scheduling

    def restarted_since(self, pending: Pending) -> bool:
        """True when a containerd other than the one running at the write serves the socket now."""
        now = self.containerd.running()
        return pending.containerd is not None and now is not None and now != pending.containerd

    def schedule(self) -> str:
        """Schedule the pending restart: 'scheduled', 'pending' (never restarted here) or 'none' (done elsewhere)."""
        assert self.pending is not None
        if self.policy == "never" or isinstance(self.restarter, NoRestart):
            if self.restarted_since(self.pending):
                log.info("restart", detail="containerd was restarted by someone else after config.toml was written")
                self.clear()
                return "none"
            return "pending"
        now = time.monotonic()
        if not self.pending.first_due:
            self.pending.first_due = now + self.settle_s + spread_delay(self.node_name, self.spread_s)
            self.pending.due = self.pending.first_due
        else:
            self.pending.due = min(max(self.pending.due, now + self.settle_s), self.pending.first_due + self.max_settle_s)
        return "scheduled"

    def due(self) -> float:
        """When the scheduled restart is due (monotonic), or 0 when none is scheduled."""
        return self.pending.due if self.pending is not None else 0.0

    # ---------------------------------------------------------------- restart, health, rollback

    def _ready_enough(self, h: Health) -> bool:
        """What a restart waits for: CRI ready and, where the release reports it (1.x), our config_path."""
        return h.ready and (h.config_path is None or self.paths.hosts_dir in h.config_path.split(":"))

    def _wait_healthy(self, timeout: float, before: Running | None = None) -> Health:
        """Wait until CRI is ready, and with `before`, served by another process than that one.

        A restart command may return before the restart (`systemctl --no-block`), or not restart
        at all (a wrong unit name): a file that was never loaded must not count as good.
        """

        def good(h: Health) -> bool:
            return self._ready_enough(h) and (before is None or self.containerd.running() not in (None, before))

        h = self.containerd.wait_healthy(timeout, good, self.stop)
        if self.stop() and not good(h):
            raise Stopping
        if h.ready and not good(h):
            return Health(False, (f"containerd was not restarted: pid {before[0] if before else '?'} still serves the socket",))
        return h

    def _restart_and_wait(self, pending: Pending) -> tuple[Health, bool]:
        """Restart containerd unless someone else did; (its health after, whether nodecfg restarted it)."""
        if self.restarted_since(pending):
            h = self._wait_healthy(self.health_timeout_s)
            log.info("restart", skipped="containerd already restarted after config.toml was written", healthy=h.ready)
            return h, False
        try:
            self.restarter.restart(self.restart_timeout_s, self.stop)
            failpoint("after-restart")
            h = self._wait_healthy(self.health_timeout_s, before=pending.containerd)
        except RestartInterrupted:
            raise Stopping from None
        except RestartError as e:
            log.error("restart", error=str(e))
            h = Health(False, (str(e),))
        self.metrics.restarts.inc()
        return h, True

    def restart_now(self) -> None:
        """Carry out the pending restart; roll back if containerd does not run healthy with it.

        SIGTERM during the restart or the wait: stop waiting and leave the pending restart on disk;
        the next start finds containerd restarted (or not) and finishes the check or the restart.
        """
        assert self.pending is not None
        pending = self.pending
        started = time.monotonic()
        self.busy_until = started + 2 * (self.health_timeout_s + self.restart_timeout_s)
        try:
            h, restarted = self._restart_and_wait(pending)
        except Stopping:
            log.warning(
                "restart",
                detail="stopping before containerd was seen healthy: the next start checks it",
                input=pending.input_hash,
            )
            return
        why = self.containerd.not_loaded(h, restarted=True)
        if why is None:
            self.clear()
            duration = round(time.monotonic() - started, 3)
            log.info("restart", restarted=restarted, healthy=h.ready, input=pending.input_hash, duration_s=duration)
            self.report(True, "input applied; containerd healthy", "done" if restarted else "not-needed")
            return
        self.rollback(pending, Health(False, (why,)) if h.ready else h, started)

    def _restore_good(self, pending: Pending) -> None:
        """Put back the config.toml containerd ran with before the burst (or none, if there was none)."""
        real = self.paths.real(self.paths.containerd_config)
        if pending.good_exists:
            good = self.files.read_good()
            assert good is not None
            mode = read_file(real).mode
            atomic_write(real, good, mode if mode is not None else 0o644)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(real)

    def rollback(self, pending: Pending, h: Health, started: float) -> None:
        """Record the input as bad, put the good config.toml back and restart containerd with it."""
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        # First remember the input as bad: a crash from here on must not retry it. (A damaged
        # pending file names no input: there is none to remember.)
        if pending.input_hash:
            self.bad[pending.input_hash] = BadInput(when, h.describe())
            self.files.write_bad(self.bad)
        failpoint("after-bad-recorded")
        self._restore_good(pending)
        failpoint("after-good-restored")
        interrupted = False
        try:
            self.restarter.restart(self.restart_timeout_s, self.stop)
            after = self._wait_healthy(self.health_timeout_s)
        except (RestartInterrupted, Stopping):
            # The good file is back and its restart was asked for: nothing is left to roll back.
            interrupted = True
            after = Health(False, ("stopped before containerd was seen healthy after the rollback",))
        except RestartError as e:
            after = Health(False, (str(e),))
        self.metrics.rolled_back()
        self.clear()
        log.error(
            "rollback",
            detail="containerd was not healthy with the new config.toml; the previous one is back",
            unhealthy=h.describe(),
            input=pending.input_hash,
            healthy_after_rollback=after.ready,
            interrupted=interrupted,
            duration_s=round(time.monotonic() - started, 3),
        )
        self.report(False, f"rolled back at {when}: containerd {h.describe()}; this input will not be retried", "rolled-back")
