"""Mirror health: probe every mirror endpoint the daemon wrote, and take sick ones out of rotation.

containerd has no health check of its own: a mirror that hangs stalls every pull that reaches it
(1.6 has no timeout; 1.7 and 2.x give up after `image_pull_progress_timeout`, 5 minutes by
default). hosts.toml is read on every pull, so leaving a sick mirror out of it routes the next
pull around it at once, without a restart.

The checker runs on its own thread with a small pool of probe workers: a hanging mirror never
blocks the reconcile loop. It only reports transitions (an endpoint out of rotation, or back) on
the daemon's event queue; the reconcile loop renders "input minus sick endpoints".
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog

from nodecfg.node.apply import NodePaths
from nodecfg.node.reach import Reached, node_hosts, reach
from nodecfg.render.hosts import MirrorEndpoint
from nodecfg.spec.durations import parse_duration
from nodecfg.spec.models import MirrorHealth

log = structlog.get_logger("nodecfg")

JITTER = 0.2  # each probe waits interval * (1 +- 20 %), so a fleet's probes do not line up
MAX_PARALLEL_PROBES = 8
Key = tuple[str, str]  # (registry, mirror URL)
Reach = Callable[[MirrorEndpoint, float], Reached]


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
        return cls(h.enabled, parse_duration(h.interval), parse_duration(h.timeout), h.outAfter, h.backAfter)


@dataclass(frozen=True)
class Transition:
    """An endpoint taken out of rotation (`out`) or put back (`back`)."""

    registry: str
    url: str
    to: str
    reason: str
    at: float  # wall clock


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
    busy: bool = False

    def observe(self, r: Reached, now: float) -> Transition | None:
        """Count one probe result; return the transition it causes, if any."""
        self.last, self.probes, self.latency_sum = r, self.probes + 1, self.latency_sum + r.seconds
        if r.answered:
            self.oks, self.fails = self.oks + 1, 0
            if not self.in_rotation and self.oks >= self.settings.back_after:
                return self._move("back", f"{self.oks} good probes in a row ({r.describe()})", now)
        else:
            self.fails, self.oks = self.fails + 1, 0
            if self.in_rotation and self.fails >= self.settings.out_after:
                return self._move("out", f"{self.fails} failed probes in a row, last: {r.describe()}", now)
        return None

    def _move(self, to: str, reason: str, now: float) -> Transition:
        self.in_rotation = to == "back"
        self.since, self.reason = now, reason
        self.transitions[to] = self.transitions.get(to, 0) + 1
        return Transition(self.endpoint.registry, self.endpoint.url, to, reason, now)

    def to_json(self) -> dict[str, Any]:
        """For status.json, `nodecfg status`, `explain` and `doctor`."""
        return {
            "registry": self.endpoint.registry,
            "url": self.endpoint.url,
            "inRotation": self.in_rotation,
            "since": self.since,
            "reason": self.reason,
            "lastProbe": self.last.describe() if self.last else "",
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
        self._pool: ThreadPoolExecutor | None = None
        self._pinned: dict[str, str] = {}
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

    def _reach(self, ep: MirrorEndpoint, timeout: float) -> Reached:
        return reach(ep.entry, self._pinned, self.paths, timeout, agent="nodecfg-health")

    def update(self, endpoints: Sequence[MirrorEndpoint], settings: Mapping[str, MirrorHealth]) -> None:
        """The endpoints of the input just rendered; health is kept for the ones that stay."""
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
        self._pool = ThreadPoolExecutor(MAX_PARALLEL_PROBES, thread_name_prefix="nodecfg-probe")
        self._thread = threading.Thread(target=self._run, name="nodecfg-mirrors", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop probing; a probe in flight is abandoned (its thread ends at its own timeout)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            due: list[EndpointHealth] = []
            with self.lock:
                for h in self.health.values():
                    if not h.busy and h.due <= now:
                        h.busy = True
                        due.append(h)
                waits = [h.due - now for h in self.health.values() if not h.busy]
            if due:
                self._pinned = node_hosts(self.paths)
            for h in due:
                assert self._pool is not None
                fut = self._pool.submit(self.probe, h.endpoint, h.settings.timeout_s)
                fut.add_done_callback(self._callback(h))
            self._wake.wait(max(0.05, min(waits, default=1.0)))
            self._wake.clear()

    def _callback(self, h: EndpointHealth) -> Callable[[Future[Reached]], None]:
        return lambda fut: self._done(h, fut)

    def _done(self, h: EndpointHealth, fut: Future[Reached]) -> None:
        try:
            r = fut.result()
        except Exception as e:  # a bug in a probe must not stop the checker
            r = Reached("probe", detail=f"{type(e).__name__}: {e}")
        with self.lock:
            t = h.observe(r, time.time())
            h.busy = False
            h.due = time.monotonic() + h.settings.interval_s * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311 (jitter)
        self._wake.set()
        if t is not None:
            log.warning("mirror", registry=t.registry, endpoint=t.url, to=t.to, reason=t.reason)
            self.on_transition(t)
