"""The e2e matrix: every scenario x every containerd release, from the JUnit files of scripts/e2e.

    python -m tests.e2e.matrix RESULTS_DIR [--write-docs docs/e2e.md]

Prints a Markdown table (pass, FAIL, skip; "n/a" where a scenario does not exist for a release,
e.g. a v3 config.toml on 1.x) and the suite's time per release. With --write-docs, replaces the
part of the file between the matrix markers. Exits 1 when a release ran no test or a test failed.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

BEGIN, END = "<!-- e2e-matrix:begin -->", "<!-- e2e-matrix:end -->"


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in name.split("."))


def read_results(d: Path) -> tuple[dict[str, dict[str, str]], dict[str, float]]:
    """{release: {scenario: outcome}} and {release: seconds} from `<release>.xml` files."""
    outcomes: dict[str, dict[str, str]] = {}
    times: dict[str, float] = {}
    for f in sorted(d.glob("*.xml")):
        release = f.stem
        root = ET.parse(f).getroot()  # noqa: S314 (our own pytest's output)
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        times[release] = sum(float(s.get("time") or 0) for s in suites)
        cases = outcomes.setdefault(release, {})
        for case in root.iter("testcase"):
            module = (case.get("classname") or "").rsplit(".", 1)[-1]
            scenario = f"{module}::{case.get('name')}"
            if case.find("failure") is not None or case.find("error") is not None:
                cases[scenario] = "FAIL"
            elif case.find("skipped") is not None:
                cases[scenario] = "skip"
            else:
                cases[scenario] = "pass"
    return outcomes, times


def render(outcomes: dict[str, dict[str, str]], times: dict[str, float]) -> str:
    """The Markdown table."""
    releases = sorted(outcomes, key=_version_key)
    scenarios = sorted({s for cases in outcomes.values() for s in cases})
    lines = [
        "| scenario | " + " | ".join(f"containerd {r}" for r in releases) + " |",
        "| --- |" + " --- |" * len(releases),
    ]
    for s in scenarios:
        lines.append(f"| `{s}` | " + " | ".join(outcomes[r].get(s, "n/a") for r in releases) + " |")
    totals = []
    for r in releases:
        n = {k: sum(v == k for v in outcomes[r].values()) for k in ("pass", "FAIL", "skip")}
        totals.append(f"{n['pass']} pass, {n['FAIL']} fail, {n['skip']} skip, {times[r]:.0f} s")
    lines.append("| **total** | " + " | ".join(totals) + " |")
    return "\n".join(lines) + "\n"


def write_docs(doc: Path, table: str) -> None:
    """Replace the matrix between the markers of `doc` (they must be there)."""
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc}: no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{table}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.e2e.matrix", description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="directory of <release>.xml JUnit files")
    ap.add_argument("--write-docs", type=Path, help="write the table into this Markdown file")
    args = ap.parse_args(argv)
    outcomes, times = read_results(args.results)
    if not outcomes:
        print(f"no e2e results in {args.results}", file=sys.stderr)
        return 1
    table = render(outcomes, times)
    print(table, end="")
    if args.write_docs:
        write_docs(args.write_docs, table)
    bad = [r for r, cases in outcomes.items() if not cases or "FAIL" in cases.values()]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
