"""Whole-tree goldens: a node tree before, an input, and the exact node tree after `apply`.

Each case is a directory tests/golden/trees/<case>/ holding
  input.yaml   the input, copied to <tmp>/input/registries.yaml (with the case's secrets/ beside it:
               a mounted Secret, not a file of the node);
  args.txt     extra arguments of apply and uninstall (the containerd release);
  before/      the node tree apply starts from, after/ the tree it must leave: every file byte for byte;
  modes.txt    "<tree> <mode> <path>" for every directory (a path ending in /) and file of both trees,
               as git carries neither modes nor empty directories.
The tree after apply must be after/ exactly (no file missing or extra, every mode), a second apply
must leave it so, and uninstall must give back before/ exactly. UPDATE_GOLDEN=1 rewrites after/
and the after lines of modes.txt from what apply did; review the diff before committing it.
"""

from __future__ import annotations

import difflib
import os
import shlex
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, run

GOLDEN = Path(__file__).parent / "golden" / "trees"
CASES = sorted(d.name for d in GOLDEN.iterdir() if d.is_dir())
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
# Files whose content is not compared (their path and mode are), and why.
VOLATILE = {"var/lib/nodecfg/lock": "the last run's log line: a timestamp and a duration"}
MODES_HEADER = "# <tree> <mode> <path>: every directory (ending in /) and file of before/ and after/.\n" + "".join(
    f"# {p}: content not compared ({why}).\n" for p, why in VOLATILE.items()
)

# path -> (mode, content); a directory's content is None, a volatile file's is b"".
Tree = dict[str, tuple[int, bytes | None]]


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    """nodecfg creates hosts directories with mkdir(0o755), which the umask narrows: pin it."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def read_modes(case: Path, which: str) -> dict[str, int]:
    out = {}
    for line in (case / "modes.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            tree, mode, path = line.split(" ", 2)
            if tree == which:
                out[path] = int(mode, 8)
    return out


def golden_tree(case: Path, which: str) -> Tree:
    """before/ or after/ with the modes and directories of modes.txt; the two must list the same files."""
    modes = read_modes(case, which)
    base = case / which
    on_disk = {str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()} if base.exists() else set()
    listed = {p for p in modes if not p.endswith("/") and p not in VOLATILE}
    assert on_disk == listed, f"{case.name}: {which}/ and modes.txt disagree: {sorted(on_disk ^ listed)}"
    out: Tree = {}
    for path, mode in modes.items():
        if path.endswith("/"):
            out[path] = (mode, None)
        else:
            out[path] = (mode, b"" if path in VOLATILE else (base / path).read_bytes())
    return out


def actual_tree(root: Path) -> Tree:
    out: Tree = {}
    for dirpath, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            assert not stat.S_ISLNK(st.st_mode), f"a symlink in the node tree: {rel}"
            if stat.S_ISDIR(st.st_mode):
                out[rel + "/"] = (stat.S_IMODE(st.st_mode), None)
            else:
                out[rel] = (stat.S_IMODE(st.st_mode), b"" if rel in VOLATILE else p.read_bytes())
    return out


def build(case: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """The case's before tree at <tmp>/node and its input at <tmp>/input; returns (root, CLI args)."""
    root = tmp_path / "node"
    root.mkdir()
    for path, (mode, content) in sorted(golden_tree(case, "before").items()):
        p = root / path
        if content is None:
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content)
        p.chmod(mode)
    inp = tmp_path / "input"
    inp.mkdir()
    shutil.copy(case / "input.yaml", inp / "registries.yaml")
    if (case / "secrets").is_dir():
        shutil.copytree(case / "secrets", inp / "secrets")
    extra = shlex.split((case / "args.txt").read_text())
    return root, ["--root", str(root), "--config", str(inp / "registries.yaml"), *extra]


def describe(want: Tree, got: Tree) -> str:
    """Which paths are missing, extra, or differ in mode or content (a unified diff for text)."""
    lines = []
    for path in sorted(want.keys() - got.keys()):
        lines.append(f"missing: {path}")
    for path in sorted(got.keys() - want.keys()):
        lines.append(f"extra:   {path} (mode {got[path][0]:o})")
    for path in sorted(want.keys() & got.keys()):
        (wmode, wbody), (gmode, gbody) = want[path], got[path]
        if wmode != gmode:
            lines.append(f"mode:    {path}: want {wmode:o}, got {gmode:o}")
        if wbody != gbody and wbody is not None and gbody is not None:
            lines.append(f"content: {path}:")
            try:
                a, b = wbody.decode().splitlines(keepends=True), gbody.decode().splitlines(keepends=True)
                lines += ["    " + d.rstrip("\n") for d in difflib.unified_diff(a, b, "want", "got")]
            except UnicodeDecodeError:
                lines.append(f"    binary: want {len(wbody)} bytes, got {len(gbody)}")
    return "\n".join(lines)


def expect(want: Tree, got: Tree, what: str) -> None:
    if want != got:
        pytest.fail(f"{what}:\n{describe(want, got)}", pytrace=False)


def write_after(case: Path, got: Tree) -> None:
    """UPDATE_GOLDEN=1: after/ and the after lines of modes.txt from the tree apply left."""
    shutil.rmtree(case / "after", ignore_errors=True)
    for path, (_mode, content) in got.items():
        if content is not None and path not in VOLATILE:
            p = case / "after" / path
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content)
    before = read_modes(case, "before")
    lines = [f"before {m:o} {p}\n" for p, m in sorted(before.items())]
    lines += [f"after {m:o} {p}\n" for p, (m, _c) in sorted(got.items())]
    (case / "modes.txt").write_text(MODES_HEADER + "".join(lines))


def assert_no_test_paths(got: Tree, tmp_path: Path) -> None:
    """A golden must not hide a path of this machine: nodecfg writes host paths, never the --root."""
    for needle in (str(tmp_path), str(REPO)):
        leaks = [p for p, (_m, c) in got.items() if needle in p or (c is not None and needle.encode() in c)]
        assert not leaks, f"these files hold the test machine's path {needle}: {leaks}"


def apply(args: list[str]) -> None:
    rc, out, err = run("apply", *args, "--restart", "never")
    assert rc == 0, out + err


@pytest.mark.parametrize("name", CASES)
def test_apply_leaves_the_after_tree(name: str, tmp_path: Path) -> None:
    case = GOLDEN / name
    root, args = build(case, tmp_path)
    expect(golden_tree(case, "before"), actual_tree(root), "the before tree as built")
    apply(args)
    got = actual_tree(root)
    assert_no_test_paths(got, tmp_path)
    if UPDATE:
        write_after(case, got)
    expect(golden_tree(case, "after"), got, f"the tree after apply differs from {case / 'after'}")


@pytest.mark.parametrize("name", CASES)
def test_a_second_apply_changes_nothing(name: str, tmp_path: Path) -> None:
    case = GOLDEN / name
    root, args = build(case, tmp_path)
    apply(args)
    apply(args)
    expect(golden_tree(case, "after"), actual_tree(root), "the tree after a second apply")


@pytest.mark.parametrize("name", CASES)
def test_uninstall_gives_back_the_before_tree(name: str, tmp_path: Path) -> None:
    case = GOLDEN / name
    root, args = build(case, tmp_path)
    apply(args)
    rc, out, err = run("uninstall", *args, "--restart-method", "none")
    assert rc == 0, out + err
    expect(golden_tree(case, "before"), actual_tree(root), "the tree after uninstall differs from before/")
