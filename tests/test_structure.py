"""The tree's shape: small modules and functions, and every citation pointing at a file in this repository.

These hold the restructuring of issue 16 in place: a module that grows past 400 lines or a
function past 60 is a place that wants splitting, and a comment that cites a file which is not
in the repository sends its reader nowhere.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import REPO

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
CODE_DIRS = ("nodecfg", "bench")
GENERATED = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py")
# Text that cites things: the code, the tests, the scripts, the docs and the packaging.
CITING = ("nodecfg", "bench", "tests", "scripts", "docs", "systemd", "daemonset", ".ci")
CITING_FILES = ("README.md", "CHANGELOG.md", "pyproject.toml", "Dockerfile")
TOP_DIRS = ("nodecfg", "bench", "tests", "scripts", "docs", "systemd", "daemonset", "examples", ".ci")
# A repository path: a top directory, then at least one path part. Placeholders (<case>, {name},
# *.py) and paths that continue into a format string stop the match before them.
_TOP = "|".join(re.escape(d) for d in TOP_DIRS)
CITED_PATH = re.compile(r"(?<![\w./-])((?:" + _TOP + r")/[\w.-]+(?:/[\w.-]+)*)")
OUTSIDE = re.compile(r"DESIGN\.md|reference/containerd\.md|e2e-recipe\.md|STYLE\.md|\breference \d+\.\d+")


def _python_files() -> list[Path]:
    return sorted(p for d in CODE_DIRS for p in (REPO / d).rglob("*.py") if p.name not in GENERATED)


def _text_files() -> list[Path]:
    files = [REPO / f for f in CITING_FILES if (REPO / f).is_file()]
    for d in CITING:
        for p in (REPO / d).rglob("*"):
            if p.is_file() and "golden" not in p.parts and "__pycache__" not in p.parts and p.name not in GENERATED:
                files.append(p)
    return sorted(files)


def _read(p: Path) -> str | None:
    try:
        return p.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # a binary fixture cites nothing


def test_no_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(REPO)): n for p in _python_files() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_is_over_60_lines() -> None:
    long = {}
    for p in _python_files():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{p.relative_to(REPO)}:{node.lineno} {node.name}"] = n
    assert long == {}


def _missing_citations(path: Path, text: str) -> list[str]:
    out = []
    for m in CITED_PATH.finditer(text):
        cited = m.group(1).rstrip(".")
        if not (REPO / cited).exists():
            line = text.count("\n", 0, m.start()) + 1
            out.append(f"{path.relative_to(REPO)}:{line} cites {cited}")
    return out


def test_every_cited_repository_path_exists() -> None:
    missing = [c for p in _text_files() if (t := _read(p)) is not None for c in _missing_citations(p, t)]
    assert missing == []


def test_nothing_cites_a_file_outside_the_repository() -> None:
    this = Path(__file__).resolve()
    found = []
    for p in _text_files():
        text = _read(p)
        if text is None or p.resolve() == this:
            continue
        for m in OUTSIDE.finditer(text):
            found.append(f"{p.relative_to(REPO)}:{text.count(chr(10), 0, m.start()) + 1} {m.group(0)}")
    assert found == []


@pytest.mark.parametrize(
    ("text", "cited"),
    [
        ("see docs/containerd.md, ## hosts.toml", ["docs/containerd.md"]),
        ("tests/golden/trees/<case>/ holds", ["tests/golden/trees"]),
        ("(nodecfg/node/lock.py).", ["nodecfg/node/lock.py"]),
        ("x/docs/containerd.md is not ours", []),
    ],
)
def test_the_citation_pattern_finds_paths_and_nothing_else(text: str, cited: list[str]) -> None:
    assert [m.group(1).rstrip(".") for m in CITED_PATH.finditer(text)] == cited
