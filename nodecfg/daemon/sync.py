"""The daemon's main step: read and render the input, apply what differs, hand a cold change to the restarts.

Invalid input changes nothing and makes the node not ready; a hot change (hosts.toml, CA and key
files) is applied at once; a cold one (config.toml) is checked with the host's containerd, the
good config.toml kept, then written, and its restart scheduled (docs/daemon.md, "What happens on
a change").
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from nodecfg.containerd.errors import ConfigError
from nodecfg.containerd.versions import ContainerdTarget
from nodecfg.daemon.loop import DaemonLoop, Options
from nodecfg.daemon.restarts import input_hash
from nodecfg.node.containerd import detect_target
from nodecfg.node.fs import NodeError
from nodecfg.node.reconcile import Prepared, apply, prepare, recover_node
from nodecfg.plan.redaction import redact
from nodecfg.spec.loader import SpecError

log = structlog.get_logger("nodecfg")


class Daemon(DaemonLoop):
    """`nodecfg run`: the loop of loop.DaemonLoop, following the input. `run()` returns the exit code."""

    def __init__(self, opts: Options) -> None:
        super().__init__(opts)
        self.target: ContainerdTarget | None = None
        self.last_error_logged: str | None = None

    def sync_input(self, reason: str) -> None:
        """Render the input against the node and apply what differs; schedule a restart if needed."""
        started = time.monotonic()
        event: dict[str, Any] = {"trigger": reason}
        prepared = self._prepare(reason, event, started)
        if prepared is None:
            return
        digest = input_hash(prepared)
        event["input"] = digest
        self.metrics.input_read(prepared.config.digest(), self.target, now=time.time())
        bad = self.restarts.bad_input(digest)
        if bad is not None:
            return self._failed(
                started,
                event,
                "bad-input",
                f"this input was rolled back at {bad.time} (containerd was unhealthy with it); waiting for a new input",
            )
        ops = prepared.plan.operations
        cold = prepared.plan.restart_required
        event["changed"] = [f"{op.action.value}:{op.path}" for op in ops]
        event["class"] = "cold" if cold else ("hot" if ops else "none")
        if cold:
            problem = self.containerd.check_candidate(prepared)
            if problem:
                return self._failed(started, event, "invalid-input", problem)
            self.restarts.before_cold_write(digest)
        if not self._apply(prepared, event, started):
            return
        if cold:
            self.restarts.after_cold_write(digest)
        restart = self.restarts.schedule() if self.restarts.pending is not None else "none"
        event["restart"] = restart
        warnings = [redact(w, prepared.rendered.secrets) for w in (*prepared.rendered.warnings, *prepared.plan.warnings)]
        if warnings:
            event["warnings"] = warnings
        self._finish(started, event, "ok", restart)

    def _prepare(self, reason: str, event: dict[str, Any], started: float) -> Prepared | None:
        """Recover the node, read and render the input; None (and the node not ready) when that fails."""
        sick = self.mirrors.sick()
        try:
            recovered = recover_node(self.paths)
            if recovered:
                event["recovered"] = recovered
            if self.target is None or reason in ("start", "resync", "sighup"):
                self.target = detect_target(self.paths, self.opts.containerd_version)
            prepared = prepare(
                self.paths,
                self.opts.config_path,
                self.opts.containerd_version,
                self.opts.env,
                self.target,
                input_format=self.opts.input_format,
                sick=sick,
            )
        except SpecError as e:
            self._failed(started, event, "invalid-input", e.render())
            return None
        except ConfigError as e:
            self._failed(started, event, "invalid-input", "; ".join(e.problems))
            return None
        except (NodeError, OSError, UnicodeDecodeError) as e:
            self._failed(started, event, "error", str(e))
            return None
        r = prepared.config.restart
        self.restarts.configure(r.policy, r.spread.seconds, r.healthTimeout.seconds)
        endpoints = prepared.rendered.endpoints
        if self.mirrors.update(endpoints, {e.registry: prepared.config.health_of(e.registry) for e in endpoints}) != sick:
            # Health settings changed what is sick (a registry's checks switched off, say): render again.
            self.events.put(("mirror", None))
        self._rewatch(prepared)
        return prepared

    def _apply(self, prepared: Prepared, event: dict[str, Any], started: float) -> bool:
        """Write what differs; False (and the node not ready) when that fails."""
        if prepared.plan.operations:
            try:
                new_state = apply(prepared)
            except NodeError as e:
                self._failed(started, event, "error", str(e))
                return False
            self.metrics.owned_files.set(len(new_state.owned))
        else:
            self.metrics.owned_files.set(len(prepared.state.owned))
        # Only now is this what the node holds: the credential hosts a restart check expects in
        # config.toml, and the mirrors hosts.toml leaves out.
        self.containerd.auth_hosts = prepared.rendered.config.auth_hosts
        self.containerd.secrets = prepared.rendered.secrets
        self.routed_out = frozenset(prepared.rendered.routed_out)
        if prepared.rendered.routed_out:
            event["routedOut"] = [f"{r}: {u}" for r, u in prepared.rendered.routed_out]
        return True

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
        h = self.containerd.health()
        if restart == "pending":
            reason = f"config.toml changed; restart pending (policy {self.restarts.policy}, method {self.opts.restarter.name})"
            self._set(
                ready=h.ready,
                reason=reason if h.ready else f"{reason}; containerd {h.describe()}",
                last={**event, "time": time.time()},
            )
        elif (why := self.containerd.not_loaded(h, restarted=False)) is not None:
            self._set(ready=False, reason=why, last={**event, "time": time.time()})
        else:
            self._set(ready=True, reason="input applied; containerd healthy", last={**event, "time": time.time()})
