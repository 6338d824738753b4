"""Render + diff time as the input grows: in process and as a whole `nodecfg diff`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import REPO, Report, ms
from nodecfg.node.paths import NodePaths
from nodecfg.node.reconcile import prepare

DEBIAN_NODE = REPO / "examples" / "node"


def registries_yaml(n: int) -> str:
    lines = ["version: 1", "registries:"]
    for i in range(n):
        if i % 3 == 0:
            lines += [f"  reg{i}.corp.example:", f'    mirrors: ["https://mirror{i}.corp.example"]']
        elif i % 3 == 1:
            lines += [f"  10.0.{i // 250}.{i % 250}:5000:", "    plainHTTP: true"]
        else:
            lines += [f"  reg{i}.corp.example:5000:", "    skipVerify: true", "    headers: {X-Team: [platform]}"]
    return "\n".join(lines) + "\n"


def bench_render(report: Report, sizes: list[int]) -> None:
    rows = []
    previous: tuple[float, float] | None = None
    for n in sizes:
        d = Path(tempfile.mkdtemp(prefix="nodecfg-bench-"))
        try:
            root = d / "node"
            shutil.copytree(DEBIAN_NODE, root)
            config = d / "registries.yaml"
            config.write_text(registries_yaml(n))
            paths = NodePaths(root=str(root))
            runs = 5 if n <= 1000 else 2
            inproc = []
            for _ in range(runs):
                t = time.perf_counter()
                p = prepare(paths, str(config), "1.6.20")
                inproc.append(time.perf_counter() - t)
            assert len(p.plan.operations) == n + 1
            whole = []
            for _ in range(max(1, runs // 2)):
                t = time.perf_counter()
                r = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "nodecfg",
                        "diff",
                        "--root",
                        str(root),
                        "--config",
                        str(config),
                        "--containerd-version",
                        "1.6.20",
                    ],
                    capture_output=True,
                    check=False,
                    cwd=REPO,
                )
                whole.append(time.perf_counter() - t)
                assert r.returncode == 1, r.stderr[-500:]
            a, b = min(inproc), min(whole)
            growth = "" if previous is None else f"{a / previous[0]:.1f}x / {b / previous[1]:.1f}x"
            rows.append([str(n), ms(a), ms(b), growth])
            report.values[f"render_{n}"] = a
            if previous is not None:
                report.values[f"render_growth_{n}"] = a / previous[0]
            previous = (a, b)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    report.add(
        "Render + diff time by number of registries",
        "Best of several runs. In process: `prepare()` (read input, render, read node, plan). Whole "
        "process: `nodecfg diff` on a copy of Debian's containerd node, Python start-up included. "
        "Growth: factor from the previous size (10x more registries), in process / whole process.",
        ["registries", "in process", "nodecfg diff process", "growth"],
        rows,
    )
