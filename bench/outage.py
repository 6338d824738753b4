"""Pulls while a mirror fails, with nodecfg routing around it and with containerd alone."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from bench.daemon import running_daemon
from bench.report import Report, ms, pct
from nodecfg.node.cri import CRIClient, CRIError
from tests.e2e.lab import Lab, Node, open_node

OUTAGE_HEALTH = "health: {interval: 500ms, timeout: 1s, outAfter: 2, backAfter: 2}"


def _timed_pull(node: Node, ref: str, timeout: float) -> tuple[float, str]:
    """(seconds, image id or 'timeout'/'error') of one CRI pull that must go to a registry."""
    with CRIClient(node.containerd.socket, timeout=timeout) as c:
        c.remove(ref)
        t0 = time.perf_counter()
        try:
            image = c.pull(ref)
        except CRIError as e:
            return time.perf_counter() - t0, "timeout" if e.code == "DEADLINE_EXCEEDED" else "error"
    return time.perf_counter() - t0, image


def _watch_out(path: Path, host: str, t0: float, seen: list[float], stop: threading.Event) -> None:
    """Record when `host` first leaves the file (the daemon took the mirror out)."""
    while not stop.is_set() and not seen:
        if host not in path.read_text():
            seen.append(time.perf_counter() - t0)
        time.sleep(0.01)


def _outage_run(node: Node, lab: Lab, mode: str, pulls: int, timeout: float, *, routed: bool) -> list[str]:
    """Pull through `lab.flaky` failing as `mode`; with `routed`, the daemon routes around it."""
    up, flaky = lab.upstream.host, lab.flaky
    ref = f"{up}/team/app:3"
    mirror_id = lab.image("plain", "team/app:3").id
    hosts = node.hosts_dir / up / "hosts.toml"
    times: list[float] = []
    flaky.set(mode)
    t0 = time.perf_counter()
    out_at: list[float] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_out, args=(hosts, flaky.host, t0, out_at, stop), daemon=True)
    watcher.start()
    first_fast = None
    for _ in range(pulls):
        took, got = _timed_pull(node, ref, timeout)
        times.append(took)
        if first_fast is None and got not in ("timeout", "error") and took < 1.0:
            first_fast = time.perf_counter() - t0
    if routed:
        watcher.join(10)  # the pulls may all be done (refused at once) before the probes judge it
    stop.set()
    watcher.join()
    flaky.set("forward")
    t1 = time.perf_counter()
    back = None
    if routed:
        while time.perf_counter() - t1 < 30:
            if flaky.host in hosts.read_text():
                _took, got = _timed_pull(node, ref, timeout)
                if got == mirror_id:
                    back = time.perf_counter() - t1
                    break
            time.sleep(0.05)
    return [
        mode,
        "nodecfg routing" if routed else "containerd alone",
        ms(pct(times, 50)) if max(times) < timeout else f"{ms(pct(times, 50))} ({sum(t >= timeout for t in times)} timed out)",
        ms(pct(times, 99)),
        "-" if not out_at else ms(out_at[0]),
        "-" if first_fast is None else ms(first_fast),
        "-" if not routed else ("> 30 s" if back is None else ms(back)),
    ]


def bench_mirror_outage(report: Report, lab: Lab, modes: list[str], pulls: int, timeout: float) -> None:
    up, flaky = lab.upstream.host, lab.flaky
    text = f"version: 1\nregistries:\n  {up}:\n    plainHTTP: true\n    mirrors: ['http://{flaky.host}']\n    {OUTAGE_HEALTH}\n"
    rows = []
    with open_node(lab) as node:
        node.converge(text)
        for mode in modes:
            with running_daemon(node, {"registries.yaml": text}):
                rows.append(_outage_run(node, lab, mode, pulls, timeout, routed=True))
            node.converge(text)  # the daemon is gone: the mirror is back in hosts.toml, nothing routes
            rows.append(_outage_run(node, lab, mode, pulls, timeout, routed=False))
    report.add(
        "Pulls during a mirror outage",
        f"One mirror (a proxy in front of a registry) in front of a reachable upstream; the proxy "
        f"fails as each mode says from the first pull on. {pulls} CRI pulls one after another (the "
        f"image removed before each), each given up after {timeout:.0f} s, with nodecfg's daemon "
        f"routing ({OUTAGE_HEALTH}) and with containerd alone (the same hosts.toml, no daemon). "
        "'taken out': from the outage to the mirror leaving hosts.toml; 'first fast pull': to the "
        "first pull under 1 s (a pull already stuck on a hanging mirror waits for its own timeout); "
        "'back in use': from the mirror's recovery to the first pull it serves again.",
        ["mode", "with", "pull p50", "pull p99", "taken out", "first fast pull", "back in use"],
        rows,
    )
