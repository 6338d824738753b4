"""Mirror health: probe every mirror endpoint the daemon wrote, and take sick ones out of rotation.

containerd has no health check of its own: a mirror that hangs stalls every pull that reaches it
(1.6 has no timeout; 1.7 and 2.x give up after `image_pull_progress_timeout`, 5 minutes by
default). hosts.toml is read on every pull, so leaving a sick mirror out of it routes the next
pull around it at once, without a restart.

The checker runs on its own thread and starts each probe on a daemon thread of its own, with the
probe's deadline kept by the checker (DNS lookups have no timeout): a hanging mirror never blocks
the reconcile loop, the other probes, or the daemon's exit. A probe given up at its deadline is
judged by the step it had reached: one that had sent its request on a live connection is a mirror
that is connected but does not answer (`Stage.NO_ANSWER`, what containerd 2.3+ waits 30 s for on
each request). It only reports transitions (an endpoint out of rotation, or back) on the daemon's
event queue; the reconcile loop renders "input minus sick endpoints".
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from nodecfg.node.paths import NodePaths
from nodecfg.node.reach import Pinned, Progress, Reached, Stage, no_answer, node_hosts, reach
from nodecfg.render.hosts import MirrorEndpoint
from nodecfg.spec.models import MirrorHealth

log = structlog.get_logger("nodecfg")

JITTER = 0.2  # each probe waits interval * (1 +- 20 %), so a fleet's probes do not line up
MAX_PARALLEL_PROBES = 16  # probes in flight at once (each on a daemon thread)
Key = tuple[str, str]  # (registry, mirror URL)
Reach = Callable[[MirrorEndpoint, float, Progress], Reached]  # (endpoint, timeout, the steps it reaches)


@dataclass(frozen=True)
class Settings:
    """MirrorHealth, parsed once."""

    enabled: bool
    interval_s: float
    timeout_s: float
    out_after: int
    back_after: int

    @classmethod
    def of(cls, h: MirrorHealth) -> Settings:
        """Parse the input's settings."""
        return cls(h.enabled, h.interval.seconds, h.timeout.seconds, h.outAfter, h.backAfter)


@dataclass(frozen=True)
class Transition:
    """An endpoint taken out of rotation (`out`) or put back (`back`)."""

    registry: str
    url: str
    to: str
    reason: str
    at: float  # wall clock
    outcome: Stage  # the last probe's: for `out`, why it failed (e.g. NO_ANSWER); `back`, ANSWERED


@dataclass
class EndpointHealth:
    """The hysteresis of one endpoint.

    `out_after` failures in a row take it out, `back_after` answers in a row put it back;
    anything else changes nothing, so a flapping mirror does not rewrite files every probe.
    """

    endpoint: MirrorEndpoint
    settings: Settings
    in_rotation: bool = True
    fails: int = 0
    oks: int = 0
    since: float = field(default_factory=time.time)  # wall clock of the last transition
    reason: str = ""
    last: Reached | None = None
    probes: int = 0
    latency_sum: float = 0.0
    transitions: dict[str, int] = field(default_factory=dict)
    due: float = 0.0  # monotonic
    busy_since: float | None = None  # monotonic start of the probe in flight
    progress: Progress = field(default_factory=Progress)  # the step the probe in flight is at
    generation: int = 0  # bumped when a probe is given up: its late answer is ignored

    def observe(self, r: Reached, now: float) -> Transition | None:
        """Count one probe result; return the transition it causes, if any."""
        self.last, self.probes, self.latency_sum = r, self.probes + 1, self.latency_sum + r.seconds
        if r.answered:
            self.oks, self.fails = self.oks + 1, 0
            if not self.in_rotation and self.oks >= self.settings.back_after:
                return self._move("back", f"{self.oks} good probes in a row ({r.describe()})", r.stage, now)
        else:
            self.fails, self.oks = self.fails + 1, 0
            if self.in_rotation and self.fails >= self.settings.out_after:
                return self._move("out", f"{self.fails} failed probes in a row, last: {r.describe()}", r.stage, now)
        return None

    def _move(self, to: str, reason: str, outcome: Stage, now: float) -> Transition:
        self.in_rotation = to == "back"
        self.since, self.reason = now, reason
        self.transitions[to] = self.transitions.get(to, 0) + 1
        return Transition(self.endpoint.registry, self.endpoint.url, to, reason, now, outcome)

    def given_up(self) -> Reached:
        """The result of the probe in flight, given up at its deadline: judged by the step it had reached.

        The probe's own socket timeouts would say the same a moment later (connect, TLS, response
        headers), but a DNS lookup has none, and they are per read: a server that trickles bytes never
        trips them.
        """
        t, stage = self.settings.timeout_s, self.progress.stage
        if stage is Stage.NO_ANSWER:
            return no_answer(t)
        if stage is Stage.CONNECT:
            return Reached(stage, detail=f"no connection within {t:g}s")
        if stage is Stage.TLS:
            return Reached(stage, detail=f"no TLS handshake within {t:g}s")
        return Reached(Stage.TIMEOUT, detail=f"no answer within {t:g}s")

    def to_json(self) -> dict[str, Any]:
        """For status.json, `nodecfg status`, `explain` and `doctor`."""
        return {
            "registry": self.endpoint.registry,
            "url": self.endpoint.url,
            "inRotation": self.in_rotation,
            "since": self.since,
            "reason": self.reason,
            "lastProbe": self.last.describe() if self.last else "",
            "lastOutcome": self.last.stage.value if self.last else "",
            "failsInARow": self.fails,
        }


class MirrorChecker:
    """Probes the endpoints of the current input on a thread of its own; see the module doc."""

    def __init__(
        self,
        paths: NodePaths,
        on_transition: Callable[[Transition], None],
        probe: Reach | None = None,
    ) -> None:
        self.paths = paths
        self.on_transition = on_transition
        self.probe = probe or self._reach
        self.lock = threading.Lock()
        self.health: dict[Key, EndpointHealth] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pinned: Pinned = {}
        self._seed: dict[Key, tuple[float, str]] = {}

    def seed(self, view: Sequence[Mapping[str, Any]]) -> None:
        """Start the endpoints out that the last daemon had out of rotation (its status.json).

        A restart during an outage must not put a hanging mirror back until probes say it is well.
        """
        for m in view:
            if not m.get("inRotation", True) and isinstance(m.get("registry"), str) and isinstance(m.get("url"), str):
                since = m.get("since")
                when = float(since) if isinstance(since, (int, float)) else time.time()
                self._seed[(m["registry"], m["url"])] = (when, f"out of rotation before this start: {m.get('reason') or '?'}")

    def _reach(self, ep: MirrorEndpoint, timeout: float, progress: Progress) -> Reached:
        return reach(ep.entry, self._pinned, self.paths, timeout, agent="nodecfg-health", progress=progress)

    def update(self, endpoints: Sequence[MirrorEndpoint], settings: Mapping[str, MirrorHealth]) -> dict[str, frozenset[str]]:
        """The endpoints of the input just rendered; health is kept for the ones that stay.

        Returns what is sick now, so a caller that rendered with another view renders again.
        """
        now = time.monotonic()
        fresh: dict[Key, EndpointHealth] = {}
        with self.lock:
            for ep in endpoints:
                s = Settings.of(settings[ep.registry])
                if not s.enabled:
                    continue
                old = self.health.get((ep.registry, ep.url))
                if old is not None:
                    old.endpoint, old.settings = ep, s
                    fresh[(ep.registry, ep.url)] = old
                else:
                    h = EndpointHealth(ep, s, due=now)
                    seeded = self._seed.pop((ep.registry, ep.url), None)
                    if seeded is not None:
                        h.in_rotation, (h.since, h.reason) = False, seeded
                    fresh[(ep.registry, ep.url)] = h
            self.health = fresh
            self._seed.clear()  # seeds apply to the input the daemon started with, only
        self._wake.set()
        return self.sick()

    def sick(self) -> dict[str, frozenset[str]]:
        """Mirror URLs out of rotation, by registry: what the next render leaves out."""
        out: dict[str, set[str]] = {}
        with self.lock:
            for (registry, url), h in self.health.items():
                if not h.in_rotation:
                    out.setdefault(registry, set()).add(url)
            for registry, url in self._seed:  # before the first update
                out.setdefault(registry, set()).add(url)
        return {k: frozenset(v) for k, v in out.items()}

    def view(self) -> list[dict[str, Any]]:
        """Every endpoint's health, for status.json."""
        with self.lock:
            return [h.to_json() for _k, h in sorted(self.health.items())]

    def samples(self) -> list[tuple[str, str, bool, int, float, dict[str, int]]]:
        """(registry, url, up, probes, latency sum, transitions) per endpoint, for /metrics."""
        with self.lock:
            return [
                (r, u, h.in_rotation, h.probes, h.latency_sum, dict(h.transitions)) for (r, u), h in sorted(self.health.items())
            ]

    def start(self) -> None:
        """Start probing (on threads of its own)."""
        self._thread = threading.Thread(target=self._run, name="nodecfg-mirrors", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop probing. Probes in flight are daemon threads: they never hold up the exit."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self._round()
            except Exception as e:  # the checker must outlive any bug or odd node file
                log.exception("mirror-checker", error=f"{type(e).__name__}: {e}")
                wait = 1.0
            self._wake.wait(wait)
            self._wake.clear()

    def _round(self) -> float:
        """Start the probes that are due, give up those past their timeout; seconds to wait."""
        now = time.monotonic()
        due: list[tuple[EndpointHealth, int, Progress]] = []
        late: list[EndpointHealth] = []
        with self.lock:
            in_flight = sum(h.busy_since is not None for h in self.health.values())
            for h in self.health.values():
                if h.busy_since is not None:
                    # The probe's own timeouts are per step (DNS has none): the deadline is kept here.
                    if now - h.busy_since > h.settings.timeout_s:
                        late.append(h)
                elif h.due <= now and in_flight < MAX_PARALLEL_PROBES:
                    h.busy_since, h.progress, in_flight = now, Progress(), in_flight + 1
                    due.append((h, h.generation, h.progress))
            waits = [h.due - now for h in self.health.values() if h.busy_since is None]
            waits += [h.busy_since + h.settings.timeout_s - now for h in self.health.values() if h.busy_since is not None]
        for h in late:
            self._finish(h, None, h.given_up())
        if due:
            self._pinned = node_hosts(self.paths)
        for h, gen, progress in due:
            threading.Thread(target=self._probe, args=(h, gen, progress), name="nodecfg-probe", daemon=True).start()
        return max(0.02, min(waits, default=1.0))

    def _probe(self, h: EndpointHealth, generation: int, progress: Progress) -> None:
        try:
            r = self.probe(h.endpoint, h.settings.timeout_s, progress)
        except Exception as e:  # a bug in a probe must not stop the checker
            r = Reached(Stage.PROBE, detail=f"{type(e).__name__}: {e}")
        self._finish(h, generation, r)

    def _finish(self, h: EndpointHealth, generation: int | None, r: Reached) -> None:
        """Count a probe's result (generation None: the checker gave it up at its deadline)."""
        with self.lock:
            if generation is not None and generation != h.generation:
                return  # given up already; this answer came too late
            h.generation += 1
            t = h.observe(r, time.time())
            h.busy_since = None
            h.due = time.monotonic() + h.settings.interval_s * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311 (jitter)
        self._wake.set()
        if t is not None:
            log.warning("mirror", registry=t.registry, endpoint=t.url, to=t.to, outcome=t.outcome.value, reason=t.reason)
            self.on_transition(t)
