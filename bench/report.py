"""The report the benchmarks fill: text tables on stdout, Markdown for docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psutil

from nodecfg import __version__

REPO = Path(__file__).resolve().parent.parent


class Report:
    """Sections of (name, rows) printed as text tables and written as Markdown."""

    def __init__(self) -> None:
        self.sections: list[tuple[str, str, list[str], list[list[str]]]] = []
        self.values: dict[str, float] = {}  # what the targets are checked against

    def add(self, title: str, note: str, header: list[str], rows: list[list[str]]) -> None:
        self.sections.append((title, note, header, rows))
        widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
        print(f"\n## {title}")
        for row in [header, *rows]:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)))
        sys.stdout.flush()

    def markdown(self) -> str:
        out = []
        for title, note, header, rows in self.sections:
            out.append(f"## {title}\n")
            if note:
                out.append(note + "\n")
            out.append("| " + " | ".join(header) + " |")
            out.append("| " + " | ".join("---" for _ in header) + " |")
            out.extend("| " + " | ".join(str(c) for c in row) + " |" for row in rows)
            out.append("")
        return "\n".join(out)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def ms(v: float) -> str:
    return f"{v * 1000:.1f} ms"


def machine() -> list[list[str]]:
    def version(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.split("\n")[0].strip()
        except OSError:
            return "not installed"

    return [
        ["date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")],
        ["machine", f"{platform.machine()}, {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"],
        ["OS", platform.platform()],
        ["Python", platform.python_version()],
        ["nodecfg", __version__],
        ["containerd", version(["containerd", "--version"])],
        ["docker-registry", version(["docker-registry", "--version"])],
    ]


def kept_sections(path: Path) -> str:
    """Sections other tools write into the file (between `<!-- name: ... -->` and `<!-- /name -->`)."""
    old = path.read_text() if path.exists() else ""
    return "".join("\n" + m.group(0) for m in re.finditer(r"<!-- (\w+):.*?<!-- /\1 -->\n", old, flags=re.S))
