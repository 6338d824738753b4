"""`nodecfg run`: follow the input, apply hot changes at once, restart containerd safely for cold ones.

One thread owns the node: the reconcile loop. The watcher thread, signal handlers and the resync
timer only put events on a queue; the HTTP thread only reads a snapshot. Every step that matters
after a crash is on disk before it is taken: the apply journal (core), the config.toml containerd
last ran healthy with and the pending restart (here), and the inputs that were rolled back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
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

from nodecfg.containerd.errors import ConfigError
from nodecfg.containerd.versions import ContainerdTarget
from nodecfg.daemon.metrics import Metrics
from nodecfg.daemon.mirrors import MirrorChecker
from nodecfg.daemon.server import Probe, Server
from nodecfg.daemon.watch import Watcher
from nodecfg.node.containerd import (
    DumpCheck,
    check_with_containerd,
    detect_target,
    find_binary,
    serving_pid,
    started_at,
    started_before_config,
)
from nodecfg.node.cri import CRIClient, Health, wait_healthy
from nodecfg.node.fs import NodeError, atomic_write, read_file
from nodecfg.node.inputs import watched_dirs
from nodecfg.node.lock import DAEMON_LOCK, DEFAULT_WAIT_S, LockHeld, LockWaitStopped, StateLock, Waiting
from nodecfg.node.paths import NodePaths
from nodecfg.node.reconcile import Prepared, apply, prepare, recover_node
from nodecfg.node.restart import RESTART_TIMEOUT_S, NoRestart, Restarter, RestartError, RestartInterrupted
from nodecfg.node.state import STATUS_FILE, daemon_mirrors
from nodecfg.plan.redaction import redact
from nodecfg.render.files import FileKind
from nodecfg.spec.loader import SpecError

log = structlog.get_logger("nodecfg")

PENDING_FILE = "pending-restart.json"
GOOD_CONFIG_FILE = "good-config.toml"
BAD_INPUTS_FILE = "bad-inputs.json"
SETTLE_S = 1.0  # a cold change waits this long for the rest of its burst before the restart
MAX_SETTLE_S = 30.0  # ... but a steady stream of changes cannot postpone it longer than this


class Stopping(Exception):
    """SIGTERM/SIGINT arrived while a restart or its health wait was under way."""


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
class Pending:
    """A config.toml written but not yet loaded by containerd; persisted in PENDING_FILE."""

    input_hash: str
    good_exists: bool  # False: there was no config.toml before (rollback removes it)
    # The containerd that was running when the file was last written (pid, start time), or None
    # when it cannot be seen (no hostPID). Another containerd serving the socket now has loaded it.
    # Compared as an identity, not against the clock: process start times are coarse.
    containerd: tuple[int, float] | None = None
    due: float = 0.0  # monotonic; 0 = not scheduled (policy never / method none)
    first_due: float = 0.0
    since: float = field(default_factory=time.time)  # the burst's first cold write (Unix time)

    def to_json(self) -> dict[str, Any]:
        """Plain data for PENDING_FILE."""
        return {"inputHash": self.input_hash, "goodExists": self.good_exists, "containerd": self.containerd, "since": self.since}


@dataclass
class Snapshot:
    """What the HTTP thread and `nodecfg status` see; replaced whole, never mutated in place."""

    ready: bool = False
    reason: str = "starting"
    last: dict[str, Any] = field(default_factory=dict)


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


class Daemon:
    """The reconcile loop. `run()` returns the exit code."""

    def __init__(self, opts: Options) -> None:
        self.o = opts
        self.paths = opts.paths
        self.state_real = self.paths.real(self.paths.state_dir)
        self.events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.metrics = Metrics()
        self.snapshot = Snapshot()
        self.alive_at = time.monotonic()
        self.busy_until = 0.0  # a restart blocks the loop; /healthz allows for it
        self.pending: Pending | None = None
        self.bad: dict[str, dict[str, Any]] = {}
        self.watcher: Watcher | None = None
        self.server: Server | None = None
        self.policy = "auto"
        self.spread_s = 0.0
        self.health_timeout_s = 60.0
        self.last_error_logged: str | None = None
        self.target: ContainerdTarget | None = None
        self.stop_requested = threading.Event()
        self.auth_hosts: frozenset[str] = frozenset()
        self.mirrors = MirrorChecker(self.paths, lambda t: self.events.put(("mirror", t)))
        self.metrics.watch_mirrors(self.mirrors.samples)
        self.routed_out: frozenset[tuple[str, str]] = frozenset()
        self.secrets: frozenset[str] = frozenset()
        self._dump_cache: tuple[tuple[int, int, int, frozenset[str], str], DumpCheck] | None = None

    # ---------------------------------------------------------------- files in the state dir

    def _state_file(self, name: str) -> str:
        return os.path.join(self.state_real, name)

    def _write_json(self, name: str, data: Any) -> None:
        os.makedirs(self.state_real, mode=0o700, exist_ok=True)
        atomic_write(self._state_file(name), (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), 0o600)

    def _read_json(self, name: str) -> Any:
        info = read_file(self._state_file(name))
        if info.content is None:
            return None
        try:
            return json.loads(info.content)
        except ValueError:
            log.warning("state", problem=f"{name} is not JSON; ignored")
            return None

    def _load_durable(self) -> None:
        self.bad = self._read_json(BAD_INPUTS_FILE) or {}
        p = self._read_json(PENDING_FILE)
        if isinstance(p, dict):
            running = p.get("containerd")
            self.pending = Pending(
                str(p["inputHash"]),
                bool(p["goodExists"]),
                (int(running[0]), float(running[1])) if running else None,
                since=float(p.get("since") or time.time()),
            )
            log.warning("pending-restart", detail="a config.toml change from before this start is not yet loaded by containerd")

    # ---------------------------------------------------------------- containerd

    def _cri_socket(self) -> str:
        return self.paths.real(self.paths.containerd_socket)

    def health(self) -> Health:
        """Containerd's CRI health as kubelet would see it, plus the config_path it loaded (1.x)."""
        with CRIClient(self._cri_socket(), timeout=5) as c:
            return c.health(timeout=5)

    def _running_containerd(self) -> tuple[int, float] | None:
        """(pid, start time) of the process serving containerd's socket, if this process can see it."""
        pid = serving_pid(self._cri_socket())
        since = started_at(pid)
        return None if pid is None or since is None else (pid, since)

    def _restarted_since(self, pending: Pending) -> bool:
        """True when a containerd other than the one running at the write serves the socket now."""
        now = self._running_containerd()
        return pending.containerd is not None and now is not None and now != pending.containerd

    def _ready_enough(self, h: Health) -> bool:
        """What a restart waits for: CRI ready and, where the release reports it (1.x), our config_path."""
        return h.ready and (h.config_path is None or self.paths.hosts_dir in h.config_path.split(":"))

    def _wait_healthy(self, timeout: float, before: tuple[int, float] | None = None) -> Health:
        """Wait until CRI is ready, and with `before`, served by another process than that one.

        A restart command may return before the restart (`systemctl --no-block`), or not restart
        at all (a wrong unit name): a file that was never loaded must not count as good.
        """

        def good(h: Health) -> bool:
            return self._ready_enough(h) and (before is None or self._running_containerd() not in (None, before))

        h = wait_healthy(self._cri_socket(), timeout, good, stop=self.stop_requested.is_set)
        if self.stop_requested.is_set() and not good(h):
            raise Stopping
        if h.ready and not good(h):
            return Health(False, (f"containerd was not restarted: pid {before[0] if before else '?'} still serves the socket",))
        return h

    def _dump_check(self) -> DumpCheck:
        """`containerd config dump` of the config.toml on disk with the node's binary.

        Checked in the table that binary reads; cached while the file, the binary and the auth
        hosts stay the same.
        """
        real = self.paths.real(self.paths.containerd_config)
        auth = self.auth_hosts
        try:
            st = os.stat(real)
        except OSError as e:
            return DumpCheck(True, (f"{self.paths.containerd_config}: {e.strerror}",))
        binary = find_binary(self.paths.root, self._cri_socket())
        try:
            binary_id = f"{binary}@{os.stat(binary).st_mtime_ns}" if binary else ""
        except OSError:
            binary_id = ""
        key = (st.st_ino, st.st_size, st.st_mtime_ns, auth, binary_id)
        if self._dump_cache is not None and self._dump_cache[0] == key:
            return self._dump_cache[1]
        check = check_with_containerd(binary, real, self.paths.hosts_dir, auth)
        self._dump_cache = (key, check)
        return check

    def _not_loaded(self, h: Health, *, restarted: bool) -> str | None:
        """Why containerd does not run with what nodecfg wrote (None: it does).

        Holds on every release: CRI ready; the config_path that 1.x reports over CRI; `config dump`
        of the file on disk showing our config_path and credential hosts in the table this release
        reads (2.x reports no registry config over CRI); and, unless the caller just restarted it,
        a containerd that started after config.toml was last written.
        """
        if not h.ready:
            return h.describe()
        if h.config_path is not None and self.paths.hosts_dir not in h.config_path.split(":"):
            return f"containerd runs with config_path {h.config_path!r}, not {self.paths.hosts_dir!r}"
        check = self._dump_check()
        if check.problems:
            return redact("; ".join(check.problems), self.secrets)
        if not restarted and h.config_path is None and started_before_config(self.paths):
            return "containerd started before config.toml was last written: it has not loaded it yet"
        return None

    # ---------------------------------------------------------------- reconcile

    def _set(self, *, ready: bool, reason: str, last: dict[str, Any] | None = None) -> None:
        self.snapshot = Snapshot(ready, reason, last if last is not None else self.snapshot.last)
        self.metrics.node_state(ready=ready, pending_since=self.pending.since if self.pending else None)
        status = {
            "node": self.o.node_name,
            "pid": os.getpid(),
            "ready": ready,
            "reason": reason,
            "restartPending": self.pending is not None,
            "restartPolicy": self.policy,
            "restartMethod": self.o.restarter.name,
            "badInputs": self.bad,
            "mirrors": [{**v, "inHostsToml": (v["registry"], v["url"]) not in self.routed_out} for v in self.mirrors.view()],
            "last": self.snapshot.last,
            "updated": time.time(),
        }
        try:
            self._write_json(STATUS_FILE, status)
        except (OSError, NodeError) as e:
            log.error("status", error=str(e))

    def _read_restart_settings(self, prepared: Prepared) -> None:
        r = prepared.config.restart
        self.policy = r.policy
        self.spread_s = r.spread.seconds
        self.health_timeout_s = r.healthTimeout.seconds

    def reconcile(self, reason: str) -> None:
        """Render the input against the node and apply what differs; schedule a restart if needed."""
        started = time.monotonic()
        event: dict[str, Any] = {"trigger": reason}
        sick = self.mirrors.sick()
        try:
            recovered = recover_node(self.paths)
            if recovered:
                event["recovered"] = recovered
            if self.target is None or reason in ("start", "resync", "sighup"):
                self.target = detect_target(self.paths, self.o.containerd_version)
            prepared = prepare(
                self.paths,
                self.o.config_path,
                self.o.containerd_version,
                self.o.env,
                self.target,
                input_format=self.o.input_format,
                sick=sick,
            )
        except SpecError as e:
            return self._failed(started, event, "invalid-input", e.render())
        except ConfigError as e:
            return self._failed(started, event, "invalid-input", "; ".join(e.problems))
        except (NodeError, OSError, UnicodeDecodeError) as e:
            return self._failed(started, event, "error", str(e))
        self._read_restart_settings(prepared)
        if (
            self.mirrors.update(
                prepared.rendered.endpoints,
                {e.registry: prepared.config.health_of(e.registry) for e in prepared.rendered.endpoints},
            )
            != sick
        ):
            # Health settings changed what is sick (a registry's checks switched off, say): render again.
            self.events.put(("mirror", None))
        self._rewatch(prepared)
        digest = input_hash(prepared)
        event["input"] = digest
        self.metrics.input_read(prepared.config.digest(), self.target, now=time.time())
        if digest in self.bad:
            when = self.bad[digest].get("time", "?")
            return self._failed(
                started,
                event,
                "bad-input",
                f"this input was rolled back at {when} (containerd was unhealthy with it); waiting for a new input",
            )
        ops = prepared.plan.operations
        cold = prepared.plan.restart_required
        event["changed"] = [f"{op.action.value}:{op.path}" for op in ops]
        event["class"] = "cold" if cold else ("hot" if ops else "none")
        if cold:
            problem = self._check_candidate(prepared)
            if problem:
                return self._failed(started, event, "invalid-input", problem)
            if self.pending is None:
                self._keep_good_config(digest)
                failpoint("after-good-kept")
        if ops:
            try:
                new_state = apply(prepared)
            except NodeError as e:
                return self._failed(started, event, "error", str(e))
            self.metrics.owned_files.set(len(new_state.owned))
        else:
            self.metrics.owned_files.set(len(prepared.state.owned))
        # Only now is this what the node holds: the credential hosts a restart check expects in
        # config.toml, and the mirrors hosts.toml leaves out.
        self.auth_hosts = prepared.rendered.config.auth_hosts
        self.secrets = prepared.rendered.secrets
        self.routed_out = frozenset(prepared.rendered.routed_out)
        if prepared.rendered.routed_out:
            event["routedOut"] = [f"{r}: {u}" for r, u in prepared.rendered.routed_out]
        if cold:
            assert self.pending is not None
            self.pending.input_hash = digest
            self.pending.containerd = self._running_containerd()
            self._write_json(PENDING_FILE, self.pending.to_json())
            failpoint("after-cold-write")
        restart = "none"
        if self.pending is not None:
            restart = self._schedule()
        event["restart"] = restart
        warnings = [redact(w, prepared.rendered.secrets) for w in (*prepared.rendered.warnings, *prepared.plan.warnings)]
        if warnings:
            event["warnings"] = warnings
        self._finish(started, event, "ok", restart)

    def _schedule(self) -> str:
        assert self.pending is not None
        if self.policy == "never" or isinstance(self.o.restarter, NoRestart):
            if self._restarted_since(self.pending):
                log.info("restart", detail="containerd was restarted by someone else after config.toml was written")
                self._clear_pending()
                return "none"
            return "pending"
        now = time.monotonic()
        if not self.pending.first_due:
            self.pending.first_due = now + SETTLE_S + spread_delay(self.o.node_name, self.spread_s)
            self.pending.due = self.pending.first_due
        else:
            self.pending.due = min(max(self.pending.due, now + SETTLE_S), self.pending.first_due + MAX_SETTLE_S)
        return "scheduled"

    def _check_candidate(self, prepared: Prepared) -> str | None:
        """Load the desired config.toml with the host's containerd before writing it."""
        desired = next((f for f in prepared.rendered.files if f.kind is FileKind.CONTAINERD_CONFIG), None)
        if desired is None:
            return None
        real = self.paths.real(self.paths.containerd_config)
        candidate = os.path.join(os.path.dirname(real), ".nodecfg-candidate.toml.nodecfg-tmp")
        try:
            atomic_write(candidate, desired.content, 0o600)
            check = check_with_containerd(
                find_binary(self.paths.root, self._cri_socket()),
                candidate,
                self.paths.hosts_dir,
                prepared.rendered.config.auth_hosts,
            )
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(candidate)
        if not check.ran:
            log.info("candidate-check", skipped=check.note)
            return None
        if check.problems:
            return redact("; ".join(check.problems), prepared.rendered.secrets)
        return None

    def _keep_good_config(self, digest: str) -> None:
        """Before the first cold write of a burst: keep the config.toml containerd runs with."""
        info = read_file(self.paths.real(self.paths.containerd_config))
        if info.content is not None:
            atomic_write(self._state_file(GOOD_CONFIG_FILE), info.content, 0o600)
        self.pending = Pending(digest, info.content is not None, self._running_containerd())
        self._write_json(PENDING_FILE, self.pending.to_json())

    def _failed(self, started: float, event: dict[str, Any], result: str, message: str) -> None:
        duration = time.monotonic() - started
        self.metrics.reconciled(result, duration, error=True, now=time.time())
        event.update(result=result, error=message, duration_s=round(duration, 4))
        if message != self.last_error_logged:  # a resync of the same bad input is not news
            log.error("reconcile", **event)
            self.last_error_logged = message
        self._set(ready=False, reason=f"{result}: {message}", last={**event, "time": time.time()})

    def _finish(self, started: float, event: dict[str, Any], result: str, restart: str) -> None:
        duration = time.monotonic() - started
        self.metrics.reconciled(result, duration, error=False, now=time.time())
        event.update(result=result, duration_s=round(duration, 4))
        self.last_error_logged = None
        if event.get("changed") or event["trigger"] == "start" or event.get("recovered"):
            log.info("reconcile", **event)
        if restart == "scheduled":
            self._set(ready=False, reason="containerd restart scheduled for config.toml", last={**event, "time": time.time()})
            return
        h = self.health()
        if restart == "pending":
            reason = f"config.toml changed; restart pending (policy {self.policy}, method {self.o.restarter.name})"
            self._set(
                ready=h.ready,
                reason=reason if h.ready else f"{reason}; containerd {h.describe()}",
                last={**event, "time": time.time()},
            )
        elif (why := self._not_loaded(h, restarted=False)) is not None:
            self._set(ready=False, reason=why, last={**event, "time": time.time()})
        else:
            self._set(ready=True, reason="input applied; containerd healthy", last={**event, "time": time.time()})

    # ---------------------------------------------------------------- restart and rollback

    def restart_now(self) -> None:
        """Carry out the pending restart; roll back if containerd does not run healthy with it.

        SIGTERM during the restart or the wait: stop waiting and leave the pending restart on disk;
        the next start finds containerd restarted (or not) and finishes the check or the restart.
        """
        assert self.pending is not None
        pending = self.pending
        started = time.monotonic()
        self.busy_until = started + 2 * (self.health_timeout_s + RESTART_TIMEOUT_S)
        try:
            if self._restarted_since(pending):
                h = self._wait_healthy(self.health_timeout_s)
                log.info("restart", skipped="containerd already restarted after config.toml was written", healthy=h.ready)
                restarted = False
            else:
                try:
                    self.o.restarter.restart(RESTART_TIMEOUT_S, self.stop_requested.is_set)
                    failpoint("after-restart")
                    h = self._wait_healthy(self.health_timeout_s, before=pending.containerd)
                except RestartInterrupted:
                    raise Stopping from None
                except RestartError as e:
                    log.error("restart", error=str(e))
                    h = Health(False, (str(e),))
                self.metrics.restarts.inc()
                restarted = True
        except Stopping:
            log.warning(
                "restart",
                detail="stopping before containerd was seen healthy: the next start checks it",
                input=pending.input_hash,
            )
            return
        why = self._not_loaded(h, restarted=True)
        if why is None:
            self._clear_pending()
            self._after_restart(h, pending, started, restarted=restarted)
            return
        self._rollback(pending, Health(False, (why,)) if h.ready else h, started)

    def _rollback(self, pending: Pending, h: Health, started: float) -> None:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        # First remember the input as bad: a crash from here on must not retry it.
        self.bad[pending.input_hash] = {"time": when, "reason": h.describe()}
        self._write_json(BAD_INPUTS_FILE, self.bad)
        failpoint("after-bad-recorded")
        real = self.paths.real(self.paths.containerd_config)
        if pending.good_exists:
            good = read_file(self._state_file(GOOD_CONFIG_FILE))
            assert good.content is not None
            mode = read_file(real).mode
            atomic_write(real, good.content, mode if mode is not None else 0o644)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(real)
        failpoint("after-good-restored")
        interrupted = False
        try:
            self.o.restarter.restart(RESTART_TIMEOUT_S, self.stop_requested.is_set)
            after = self._wait_healthy(self.health_timeout_s)
        except (RestartInterrupted, Stopping):
            # The good file is back and its restart was asked for: nothing is left to roll back.
            interrupted = True
            after = Health(False, ("stopped before containerd was seen healthy after the rollback",))
        except RestartError as e:
            after = Health(False, (str(e),))
        self.metrics.rolled_back()
        self._clear_pending()
        log.error(
            "rollback",
            detail="containerd was not healthy with the new config.toml; the previous one is back",
            unhealthy=h.describe(),
            input=pending.input_hash,
            healthy_after_rollback=after.ready,
            interrupted=interrupted,
            duration_s=round(time.monotonic() - started, 3),
        )
        self._set(
            ready=False,
            reason=f"rolled back at {when}: containerd {h.describe()}; this input will not be retried",
            last={**self.snapshot.last, "restart": "rolled-back", "time": time.time()},
        )

    def _clear_pending(self) -> None:
        self.pending = None
        for name in (PENDING_FILE, GOOD_CONFIG_FILE):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._state_file(name))

    def _after_restart(self, h: Health, pending: Pending, started: float, *, restarted: bool) -> None:
        duration = round(time.monotonic() - started, 3)
        log.info("restart", restarted=restarted, healthy=h.ready, input=pending.input_hash, duration_s=duration)
        self._set(
            ready=True,
            reason="input applied; containerd healthy",
            last={**self.snapshot.last, "restart": "done" if restarted else "not-needed", "time": time.time()},
        )

    # ---------------------------------------------------------------- loop

    def _rewatch(self, prepared: Prepared | None) -> None:
        dirs = watched_dirs(self.o.config_path, prepared.config if prepared else None)
        if self.watcher is not None and self.watcher.dirs == dirs:
            return
        if self.watcher is not None:
            self.watcher.stop()
        self.watcher = Watcher(dirs, self.events)
        self.watcher.start()

    def healthz(self) -> Probe:
        """The loop is alive (it wakes at least every few seconds, or is busy with a restart)."""
        now = time.monotonic()
        idle = now - self.alive_at
        if idle < 30 or now < self.busy_until:
            return Probe(True, f"loop alive ({idle:.1f}s ago)")
        return Probe(False, f"reconcile loop silent for {idle:.0f}s")

    def readyz(self) -> Probe:
        """The current input is applied and containerd is healthy with it."""
        s = self.snapshot
        return Probe(s.ready, s.reason)

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.events.put(("hup", None))
            return
        self.stop_requested.set()  # seen by a restart or health wait in progress
        self.events.put(("stop", signal.Signals(signum).name))

    def run(self) -> int:
        """Lock, recover, reconcile, then follow the input until SIGTERM/SIGINT."""
        # Handlers first: SIGTERM must also end a wait for another daemon's lock.
        old = {s: signal.signal(s, self._signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        wait = Waiting.up_to(self.o.lock_timeout_s, self.stop_requested.is_set) if self.o.wait_for_lock else None
        try:
            with StateLock(self.state_real, f"nodecfg run on {self.o.node_name}", name=DAEMON_LOCK, wait=wait):
                self._serve()
            return 0
        except LockWaitStopped:
            log.info("stopping", detail="stopped while waiting for another daemon to exit")
            return 0
        finally:
            self.mirrors.stop()
            if self.watcher is not None:
                self.watcher.stop()
            if self.server is not None:
                self.server.stop()
            for s, h in old.items():
                signal.signal(s, h)

    def _serve(self) -> None:
        if self.o.listen is not None:
            self.server = Server(*self.o.listen, self.healthz, self.readyz, self.metrics.render)
            self.server.start()
            log.info("listening", address=f"{self.o.listen[0]}:{self.server.port}")
        self._load_durable()
        self.mirrors.seed(daemon_mirrors(self.state_real))
        if self.pending is not None and self.pending.input_hash in self.bad:
            # Killed in the middle of a rollback: finish it before anything else.
            self._locked(self._rollback, self.pending, Health(False, ("a rollback was interrupted",)), time.monotonic())
        self._locked(self.reconcile, "start")
        self._rewatch_if_missing()
        self.mirrors.start()
        self._loop()

    def _locked(self, step: Callable[..., None], *args: Any) -> None:
        """Run a loop step that may change the node under the node lock, queueing behind a manual apply.

        Held per step, not for the daemon's life, so `apply --wait` and `uninstall` get their turn.
        A holder that does not let go within --wait-timeout costs this step only: it is logged, the
        node is not ready, and the next event or resync tries again.
        """
        wait = Waiting.up_to(self.o.lock_timeout_s, self.stop_requested.is_set)
        try:
            with StateLock(self.state_real, f"nodecfg run on {self.o.node_name}", wait=wait):
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

    def _loop(self) -> None:
        next_resync = time.monotonic() + self.o.resync_s
        while True:
            self.alive_at = now = time.monotonic()
            if self.stop_requested.is_set():  # also when a restart step saw it before the queue did
                log.info("stopping", restart_pending=self.pending is not None)
                return
            if self.pending is not None and self.pending.due and now >= self.pending.due:
                self._locked(self.restart_now)
                continue
            wake = [next_resync, now + 5.0]
            if self.pending is not None and self.pending.due:
                wake.append(self.pending.due)
            try:
                kind, detail = self.events.get(timeout=max(0.0, min(wake) - now))
            except queue.Empty:
                if time.monotonic() >= next_resync:
                    self._locked(self.reconcile, "resync")
                    next_resync = time.monotonic() + self.o.resync_s
                continue
            if kind == "stop":
                log.info("stopping", signal=detail, restart_pending=self.pending is not None)
                return
            # Coalesce whatever else is already queued into this one reconcile.
            stop = False
            while True:
                try:
                    k, d = self.events.get_nowait()
                except queue.Empty:
                    break
                if k == "stop":
                    stop, detail = True, d
            self._locked(self.reconcile, {"hup": "sighup", "mirror": "mirror-health"}.get(kind, "change"))
            if kind == "hup":
                next_resync = time.monotonic() + self.o.resync_s
            if stop:
                log.info("stopping", signal=detail, restart_pending=self.pending is not None)
                return
