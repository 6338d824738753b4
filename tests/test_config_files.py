"""The files containerd's config.toml imports, found under a node root in containerd's order."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from nodecfg.containerd.effective import ConfigFile
from nodecfg.containerd.versions import ContainerdVersion
from nodecfg.node import config_files
from nodecfg.node.config_files import MAX_FILES, imported_files
from nodecfg.node.fs import NodeError
from nodecfg.node.paths import NodePaths

MAIN = "/etc/containerd/config.toml"
R16, R20, R23 = (ContainerdVersion.parse(v) for v in ("1.6.20", "2.0.11", "2.3.4"))


def node(tmp_path: Path, files: dict[str, str]) -> NodePaths:
    """A node root holding `files` (host path -> text)."""
    for path, text in files.items():
        p = tmp_path / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return NodePaths(root=str(tmp_path), containerd_config=MAIN)


def imports(*items: str) -> dict[str, object]:
    return {"imports": list(items)}


def paths_of(found: list[ConfigFile]) -> list[str]:
    return [f.path for f in found]


def test_glob_matches_come_in_name_order(tmp_path: Path) -> None:
    d = "/etc/containerd/conf.d"
    paths = node(tmp_path, {f"{d}/a.toml": "", f"{d}/9.toml": "", f"{d}/10.toml": "", f"{d}/notes.txt": ""})
    found = imported_files(paths, imports(f"{d}/*.toml"), R20)
    assert paths_of(found) == [f"{d}/10.toml", f"{d}/9.toml", f"{d}/a.toml"]


def test_a_list_keeps_its_order_and_nested_imports_come_after_it(tmp_path: Path) -> None:
    paths = node(
        tmp_path,
        {
            "/etc/containerd/d/a.toml": 'imports = ["nested/n.toml"]\nversion = 2\n',
            "/etc/containerd/d/b.toml": "version = 2\n",
            "/etc/containerd/d/nested/n.toml": "version = 2\n",
        },
    )
    found = imported_files(paths, imports("d/b.toml", "d/a.toml"), R20)
    # Breadth-first: a's import (relative to a) is read after everything config.toml lists.
    assert paths_of(found) == ["/etc/containerd/d/b.toml", "/etc/containerd/d/a.toml", "/etc/containerd/d/nested/n.toml"]
    assert found[0].plain == {"version": 2}


def test_each_path_is_read_once_and_cycles_end(tmp_path: Path) -> None:
    paths = node(
        tmp_path,
        {
            MAIN: 'imports = ["d/a.toml"]\n',
            "/etc/containerd/d/a.toml": 'imports = ["../config.toml", "b.toml"]\n',
            "/etc/containerd/d/b.toml": 'imports = ["a.toml", "/etc/containerd/config.toml"]\n',
        },
    )
    found = imported_files(paths, imports("d/a.toml", "d/b.toml", "d/a.toml"), R23)
    assert paths_of(found) == ["/etc/containerd/d/a.toml", "/etc/containerd/d/b.toml"]


def test_a_missing_import_is_a_file_without_content_and_an_empty_glob_is_nothing(tmp_path: Path) -> None:
    paths = node(tmp_path, {"/etc/containerd/b.toml": "version = 2\n"})
    found = imported_files(paths, imports("absent.toml", "conf.d/*.toml", "b.toml"), R20)
    assert found == [ConfigFile("/etc/containerd/absent.toml", None), ConfigFile("/etc/containerd/b.toml", {"version": 2})]


def test_absolute_imports_are_read_under_the_root(tmp_path: Path) -> None:
    host = "/etc/nodecfg-test-only/conf.d"
    assert not os.path.exists(host)  # so a file found can only be the root's
    paths = node(tmp_path, {f"{host}/x.toml": 'version = 2\nfrom = "root"\n'})
    (by_name,) = imported_files(paths, imports(f"{host}/x.toml"), R20)
    (by_glob,) = imported_files(paths, imports(f"{host}/*.toml"), R20)
    assert by_name == by_glob == ConfigFile(f"{host}/x.toml", {"version": 2, "from": "root"})


def test_an_absolute_link_between_drop_ins_stays_under_the_root(tmp_path: Path) -> None:
    paths = node(tmp_path, {"/opt/ctd/real.toml": 'from = "root"\n'})
    (tmp_path / "etc/containerd/conf.d").mkdir(parents=True)
    os.symlink("/opt/ctd/real.toml", tmp_path / "etc/containerd/conf.d/10.toml")
    (found,) = imported_files(paths, imports("/etc/containerd/conf.d/*.toml"), R20)
    assert found == ConfigFile("/etc/containerd/conf.d/10.toml", {"from": "root"})


def test_a_relative_glob_on_1_6_is_taken_from_the_root_of_the_host(tmp_path: Path) -> None:
    paths = node(tmp_path, {"/conf.d/10.toml": 'from = "cwd"\n', "/etc/containerd/conf.d/10.toml": 'from = "etc"\n'})
    assert [f.plain for f in imported_files(paths, imports("conf.d/*.toml"), R16)] == [{"from": "cwd"}]
    assert [f.plain for f in imported_files(paths, imports("conf.d/*.toml"), R20)] == [{"from": "etc"}]


def _without_blocking(call, fifo: Path) -> BaseException | None:
    """Run `call` in a thread; fail if it blocks (then open the FIFO's other end to release it)."""
    result: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            result.append(None)
        except BaseException as e:  # handed to the test
            result.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(5)
    if t.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading the imports blocked on a FIFO")
    return result[0]


@pytest.mark.parametrize("pattern", ["/etc/containerd/conf.d/*.toml", "/etc/containerd/conf.d/20.toml"])
def test_a_fifo_among_the_drop_ins_is_refused_without_blocking(tmp_path: Path, pattern: str) -> None:
    paths = node(tmp_path, {"/etc/containerd/conf.d/10.toml": "version = 2\n"})
    fifo = tmp_path / "etc/containerd/conf.d/20.toml"
    os.mkfifo(fifo)
    error = _without_blocking(lambda: imported_files(paths, imports(pattern), R20), fifo)
    assert isinstance(error, NodeError) and "20.toml" in str(error) and "FIFO" in str(error)


def test_at_most_max_files_are_read(tmp_path: Path) -> None:
    d = "/etc/containerd/conf.d"
    paths = node(tmp_path, {f"{d}/{n:03}.toml": "" for n in range(MAX_FILES - 1)})
    assert len(imported_files(paths, imports(f"{d}/*.toml"), R20)) == MAX_FILES - 1  # with config.toml: MAX_FILES
    node(tmp_path, {f"{d}/{MAX_FILES:03}.toml": ""})
    with pytest.raises(NodeError, match=f"imports more than {MAX_FILES - 1} files"):
        imported_files(paths, imports(f"{d}/*.toml"), R20)


def test_a_drop_in_too_large_or_not_toml_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = node(tmp_path, {"/etc/containerd/big.toml": "x = 1\n" * 10, "/etc/containerd/bad.toml": "[x\n"})
    monkeypatch.setattr(config_files, "MAX_FILE_BYTES", 20)
    with pytest.raises(NodeError, match="larger than 20 bytes"):
        imported_files(paths, imports("big.toml"), R20)
    with pytest.raises(NodeError, match=r"read /etc/containerd/bad.toml \(imported by containerd's config\): not valid TOML"):
        imported_files(paths, imports("bad.toml"), R20)
