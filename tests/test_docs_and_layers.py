"""Generated docs are current; the layering holds."""

from __future__ import annotations

import re
from pathlib import Path

from nodecfg.spec.reference import generate
from tests.conftest import REPO


def test_config_reference_is_current():
    current = (REPO / "docs/config-reference.md").read_text()
    assert current == generate(), "run: python -m nodecfg.spec.reference > docs/config-reference.md"


def test_benchmarks_md_has_the_image_size_and_bench_keeps_it(tmp_path: Path) -> None:
    from bench.__main__ import kept_sections

    text = (REPO / "docs/benchmarks.md").read_text()
    section = re.search(r"<!-- image:.*?<!-- /image -->\n", text, flags=re.S)
    assert section, "scripts/build-image --record writes the image section"
    assert re.search(r"\| [0-9.]+ MiB \|", section.group(0))
    # A full `python -m bench` rewrites the file; sections other tools wrote stay.
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nold tables\n\n" + section.group(0))
    assert kept_sections(out) == "\n" + section.group(0)
    assert kept_sections(tmp_path / "missing.md") == ""
