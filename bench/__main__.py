"""Benchmarks: `python -m bench` prints a table and writes docs/benchmarks.md.

`python -m bench --quick` is the small run CI does so the benchmarks keep working; it writes
nothing unless --out is given. Nothing here asserts a time: the numbers are for people, next to
their baselines measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.daemon import (
    bench_cold_change,
    bench_idle_and_start,
    bench_pulls_under_change,
    bench_restarts_per_burst,
    bench_swap_latency,
)
from bench.outage import bench_mirror_outage
from bench.render import bench_render
from bench.report import REPO, Report, kept_sections, machine
from bench.targets import targets
from tests.e2e.harness import HOSTS_FILE, INSTALL, missing_binaries
from tests.e2e.lab import open_lab


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and short runs (what CI does)")
    ap.add_argument("--out", help="Markdown file to write (default: docs/benchmarks.md for a full run, nothing for --quick)")
    args = ap.parse_args()
    out = args.out or (None if args.quick else str(REPO / "docs" / "benchmarks.md"))
    report = Report()
    report.add("Machine", "", ["", ""], machine())
    bench_render(report, [10, 100] if args.quick else [10, 100, 1000, 10000])
    missing = missing_binaries()
    if missing or not os.access(HOSTS_FILE, os.W_OK):
        print(f"\nskipping the containerd benchmarks: need root and {INSTALL}")
    else:
        with open_lab() as lab:
            bench_swap_latency(report, lab, 20 if args.quick else 200)
            bench_pulls_under_change(report, lab, 3 if args.quick else 20)
            bench_cold_change(report, lab, 1 if args.quick else 5)
            bench_restarts_per_burst(report, lab, 3 if args.quick else 5)
            bench_idle_and_start(report, lab, 3 if args.quick else 60)
            modes = ["refuse", "hang"] if args.quick else ["hang", "refuse", "reset", "503", "slow"]
            bench_mirror_outage(report, lab, modes, 3 if args.quick else 10, 5.0 if args.quick else 20.0)
    targets(report)
    if out:
        cmd = "python -m bench" + (" --quick" if args.quick else "")
        text = f"# Benchmarks\n\nProduced by `{cmd}` (one run; numbers are from this machine, baselines measured in the same run).\n\n{report.markdown()}"
        Path(out).write_text(text + kept_sections(Path(out)))
        print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
