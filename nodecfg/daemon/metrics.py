"""The daemon's metrics, as prometheus_client collectors in a registry of the daemon's own.

One `Metrics` per daemon, never the library's global registry: two daemons in one process (the
tests) share nothing, and /metrics shows nodecfg's series and its process's, nothing else that
happens to be imported. prometheus_client's metrics are thread-safe: the reconcile loop updates
them, the HTTP thread renders them, no lock of ours.

Adding a metric is one line in `__init__` (`self.x = self.gauge("nodecfg_x", "What it is.", "label")`)
and a call where the daemon learns the value (`self.metrics.x.labels(v).set(1)`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector, Summary
from prometheus_client import disable_created_metrics as _disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from nodecfg import __version__
from nodecfg.containerd.versions import ContainerdTarget

# Every counter and summary would also get a `<name>_created` series (the time the process
# started): noise in the text format, which Prometheus does not read for anything.
_disable_created_metrics()  # type: ignore[no-untyped-call]  # (the library leaves it unannotated)

# What a reconcile ends with (the daemon's `result`): each has a series from the start, so an
# alert on `increase()` or on the last result sees it before it first happens.
RESULTS = ("ok", "invalid-input", "bad-input", "error")


# (registry, endpoint URL, in rotation, probes, probe seconds summed, transitions by direction)
MirrorSample = tuple[str, str, bool, int, float, dict[str, int]]


class _MirrorCollector(Collector):
    """Per mirror endpoint, read from the health checker at scrape time.

    Endpoints come and go with the input, so the series follow its current list.
    """

    def __init__(self, samples: Callable[[], list[MirrorSample]]) -> None:
        self.samples = samples

    def collect(self) -> Iterator[Metric]:
        labels = ["registry", "endpoint"]
        up = GaugeMetricFamily(
            "nodecfg_mirror_up",
            "1 while the mirror endpoint is in rotation, 0 while its health probes keep it out.",
            labels=labels,
        )
        moves = CounterMetricFamily(
            "nodecfg_mirror_transitions",
            "Mirror endpoints taken out of rotation (to=out) or put back (to=back).",
            labels=[*labels, "to"],
        )
        probe = SummaryMetricFamily("nodecfg_mirror_probe_seconds", "Time the mirror health probes took.", labels=labels)
        for registry, url, in_rotation, probes, seconds, transitions in self.samples():
            up.add_metric([registry, url], 1 if in_rotation else 0)
            for to in ("out", "back"):
                moves.add_metric([registry, url, to], transitions.get(to, 0))
            probe.add_metric([registry, url], count_value=probes, sum_value=seconds)
        yield from (up, moves, probe)


class Metrics:
    """The collectors the daemon updates, and the few facts it reports that need a memory."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, process_start_time_seconds, ...
        self.reconciles = self.counter("nodecfg_reconciles_total", "Reconciles run, by result.", "result")
        self.reconcile_errors = self.counter("nodecfg_reconcile_errors_total", "Reconciles that failed.")
        self.reconcile_duration = Summary(
            "nodecfg_reconcile_duration_seconds", "Time spent in reconciles.", registry=self.registry
        )
        self.last_result = self.gauge(
            "nodecfg_last_reconcile_result", "1 for the result of the last reconcile, 0 for the others.", "result"
        )
        self.last_success = self.gauge("nodecfg_last_success_timestamp_seconds", "When a reconcile last succeeded (Unix time).")
        self.restarts = self.counter("nodecfg_restarts_total", "containerd restarts nodecfg carried out.")
        self.rollbacks = self.counter("nodecfg_rollbacks_total", "config.toml changes rolled back after an unhealthy restart.")
        self.restart_pending = self.gauge(
            "nodecfg_restart_pending", "1 while config.toml was changed and containerd has not been restarted for it."
        )
        self.restart_pending_seconds = self.gauge(
            "nodecfg_restart_pending_seconds",
            "How long config.toml has been waiting for a containerd restart (0: no restart pending).",
        )
        self.owned_files = self.gauge("nodecfg_owned_files", "Files nodecfg owns on the node.")
        self.ready = self.gauge("nodecfg_ready", "1 when the current input is applied and containerd is healthy.")
        self.input_seen = self.gauge(
            "nodecfg_input_seen_timestamp_seconds",
            "When this node started reading the input it reads now (Unix time), by the input's hash: "
            "the fleet's newest input is the hash with the highest value.",
            "input_hash",
        )
        self.info = Info(
            "nodecfg",
            "nodecfg's version, the containerd release it renders for and the hash of the input last "
            "applied to the node (empty until one is).",
            registry=self.registry,
        )
        for result in RESULTS:
            self.reconciles.labels(result)
            self.last_result.labels(result)
        self._pending_since: float | None = None
        self.restart_pending_seconds.set_function(
            lambda: 0.0 if self._pending_since is None else max(0.0, time.time() - self._pending_since)
        )
        self._facts = {"version": __version__, "containerd": "", "input_hash": ""}
        self._reading = ""  # hash of the input read by the reconcile under way
        self._applied_before = ""  # what was applied before the pending restart's burst (a rollback returns to it)
        self.info.info(self._facts)

    # ---- one-line declarations, always in this registry

    def counter(self, name: str, help_: str, *labels: str) -> Counter:
        """A counter in this daemon's registry (name with `_total`, as it is exposed)."""
        return Counter(name, help_, labels, registry=self.registry)

    def gauge(self, name: str, help_: str, *labels: str) -> Gauge:
        """A gauge in this daemon's registry."""
        return Gauge(name, help_, labels, registry=self.registry)

    def histogram(self, name: str, help_: str, *labels: str, buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS) -> Histogram:
        """A histogram in this daemon's registry (latencies: name it `_seconds`)."""
        return Histogram(name, help_, labels, registry=self.registry, buckets=buckets)

    def watch_mirrors(self, samples: Callable[[], list[MirrorSample]]) -> None:
        """Expose the mirror health checker's view (`nodecfg_mirror_*`), read at each scrape."""
        self.registry.register(_MirrorCollector(samples))

    # ---- what the daemon reports

    def input_read(self, input_hash: str, target: ContainerdTarget | None, *, now: float) -> None:
        """A reconcile read a valid input (`Config.digest()`) and rendered it for `target`."""
        if input_hash != self._reading:
            self.input_seen.clear()  # one series: the input this node reads now
            self.input_seen.labels(input_hash).set(now)
            self._reading = input_hash
        self._set_info(containerd=str(target.version) if target is not None else "")

    def reconciled(self, result: str, duration: float, *, error: bool, now: float) -> None:
        """Count one reconcile; an `ok` one has applied the input it read."""
        self.reconciles.labels(result).inc()
        self.reconcile_duration.observe(duration)
        for r in {*RESULTS, result}:
            self.last_result.labels(r).set(1 if r == result else 0)
        if error:
            self.reconcile_errors.inc()
            return
        self.last_success.set(now)
        if self._reading and self._reading != self._facts["input_hash"]:
            if self._pending_since is None:  # a new burst: a rollback of it returns to what runs now
                self._applied_before = self._facts["input_hash"]
            self._set_info(input_hash=self._reading)

    def node_state(self, *, ready: bool, pending_since: float | None) -> None:
        """Ready or not; whether (and since when, Unix time) a restart is pending."""
        self.ready.set(1 if ready else 0)
        self.restart_pending.set(0 if pending_since is None else 1)
        self._pending_since = pending_since

    def rolled_back(self) -> None:
        """A restart rolled back: containerd runs with the config.toml of the input applied before."""
        self.restarts.inc()
        self.rollbacks.inc()
        self._set_info(input_hash=self._applied_before)

    def render(self) -> str:
        """The Prometheus text format (0.0.4)."""
        return generate_latest(self.registry).decode()

    def _set_info(self, **facts: str) -> None:
        self._facts.update(facts)
        self.info.info(self._facts)
