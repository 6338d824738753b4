"""The daemon's counters and gauges, and their Prometheus text exposition (format 0.0.4)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

# (registry, endpoint URL, in rotation, probes, probe seconds summed, transitions by direction)
MirrorSample = tuple[str, str, bool, int, float, dict[str, int]]


@dataclass
class Metrics:
    """Updated by the reconcile loop, read by the HTTP thread (under `lock`)."""

    reconciles: dict[str, int] = field(default_factory=dict)  # by result
    errors: int = 0
    duration_sum: float = 0.0
    duration_count: int = 0
    restarts: int = 0
    rollbacks: int = 0
    last_success: float = 0.0
    restart_pending: bool = False
    owned_files: int = 0
    ready: bool = False
    mirrors: Callable[[], list[MirrorSample]] = field(default=list, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reconciled(self, result: str, duration: float, *, error: bool, now: float) -> None:
        """Count one reconcile."""
        with self.lock:
            self.reconciles[result] = self.reconciles.get(result, 0) + 1
            self.duration_sum += duration
            self.duration_count += 1
            if error:
                self.errors += 1
            else:
                self.last_success = now

    def render(self) -> str:
        """The Prometheus text format."""
        with self.lock:
            lines: list[str] = []

            def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
                lines.append(f"# HELP {name} {help_}")
                lines.append(f"# TYPE {name} {kind}")
                lines.extend(f"{name}{labels} {_num(v)}" for labels, v in samples)

            results = sorted(self.reconciles.items()) or [("ok", 0)]
            metric(
                "nodecfg_reconciles_total",
                "counter",
                "Reconciles run, by result.",
                [(f'{{result="{r}"}}', n) for r, n in results],
            )
            metric("nodecfg_reconcile_errors_total", "counter", "Reconciles that failed.", [("", self.errors)])
            lines.append("# HELP nodecfg_reconcile_duration_seconds Time spent in reconciles.")
            lines.append("# TYPE nodecfg_reconcile_duration_seconds summary")
            lines.append(f"nodecfg_reconcile_duration_seconds_sum {_num(self.duration_sum)}")
            lines.append(f"nodecfg_reconcile_duration_seconds_count {self.duration_count}")
            metric("nodecfg_restarts_total", "counter", "containerd restarts nodecfg carried out.", [("", self.restarts)])
            metric(
                "nodecfg_rollbacks_total",
                "counter",
                "config.toml changes rolled back after an unhealthy restart.",
                [("", self.rollbacks)],
            )
            metric(
                "nodecfg_last_success_timestamp_seconds",
                "gauge",
                "When a reconcile last succeeded (Unix time).",
                [("", self.last_success)],
            )
            metric(
                "nodecfg_restart_pending",
                "gauge",
                "1 while config.toml was changed and containerd has not been restarted for it.",
                [("", int(self.restart_pending))],
            )
            metric("nodecfg_owned_files", "gauge", "Files nodecfg owns on the node.", [("", self.owned_files)])
            metric(
                "nodecfg_ready",
                "gauge",
                "1 when the current input is applied and containerd is healthy.",
                [("", int(self.ready))],
            )
        lines.extend(_mirror_lines(self.mirrors()))
        return "\n".join(lines) + "\n"


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _mirror_lines(samples: list[MirrorSample]) -> list[str]:
    """Per mirror endpoint: in rotation or not, transitions, probe latency."""
    up = ["# HELP nodecfg_mirror_up 1 while the mirror endpoint is in rotation, 0 while its health probes keep it out.",
          "# TYPE nodecfg_mirror_up gauge"]  # fmt: skip
    moves = ["# HELP nodecfg_mirror_transitions_total Mirror endpoints taken out of rotation (to=out) or put back (to=back).",
             "# TYPE nodecfg_mirror_transitions_total counter"]  # fmt: skip
    probe = ["# HELP nodecfg_mirror_probe_seconds Time the mirror health probes took.",
             "# TYPE nodecfg_mirror_probe_seconds summary"]  # fmt: skip
    for registry, url, in_rotation, probes, seconds, transitions in samples:
        labels = f'registry="{_label(registry)}",endpoint="{_label(url)}"'
        up.append(f"nodecfg_mirror_up{{{labels}}} {int(in_rotation)}")
        for to in ("out", "back"):
            moves.append(f'nodecfg_mirror_transitions_total{{{labels},to="{to}"}} {transitions.get(to, 0)}')
        probe.append(f"nodecfg_mirror_probe_seconds_sum{{{labels}}} {_num(seconds)}")
        probe.append(f"nodecfg_mirror_probe_seconds_count{{{labels}}} {probes}")
    return [*up, *moves, *probe] if samples else []


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))
