"""The model of containerd's loader (pure), pinned to what `config dump` of each release showed.

Every expectation below is an observation of `containerd --config <main> config dump` with
1.6.20, 1.7.24, 2.0.11 (2.1.9 behaved the same) and 2.3.4 (2.4.0-beta.0 the same); each table
and file carries its own values (`/main`, `u-drop`, ...) so the one that wins shows.
tests/e2e/test_effective_config.py holds the model to the binaries themselves.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

import pytest

from nodecfg.containerd.effective import ConfigFile, Effective, effective_config, first_change, import_patterns
from nodecfg.containerd.versions import ContainerdVersion

R16, R17, R20, R23 = (ContainerdVersion.parse(v) for v in ("1.6.20", "1.7.24", "2.0.11", "2.3.4"))
RELEASES = (R16, R17, R20, R23)
OLD = 'plugins."io.containerd.grpc.v1.cri"'
NEW = 'plugins."io.containerd.cri.v1.images"'
SHORT = "plugins.cri"
MAIN = "/etc/containerd/config.toml"
DROP = "/etc/containerd/conf.d/10.toml"
NONE = (None, None, None)


@dataclass(frozen=True)
class Refused:
    """containerd refuses the files (rc=1); the model must say so, with `words` in a problem."""

    words: str = ""


ERR = Refused()


def reg(table: str, path: str | None = None, user: str | None = None, header: str | None = None) -> str:
    """A registry table under plugin `table` whose values say where they came from."""
    out = ""
    if path is not None:
        out += f'[{table}.registry]\n  config_path = "{path}"\n'
    if user is not None:
        out += f'[{table}.registry.configs."h.example".auth]\n  username = "{user}"\n'
    if header is not None:
        out += f'[{table}.registry.headers]\n  X-Src = ["{header}"]\n'
    return out


def v(n: int | None) -> str:
    return "" if n is None else f"version = {n}\n"


def files(*texts: str) -> list[ConfigFile]:
    """The main file, then its drop-ins (conf.d/10.toml, 11.toml, ...), parsed."""
    paths = [MAIN, *(f"/etc/containerd/conf.d/{10 + i}.toml" for i in range(len(texts) - 1))]
    return [ConfigFile(p, tomllib.loads(t)) for p, t in zip(paths, texts, strict=True)]


def seen(e: Effective) -> tuple[str | None, str | None, str | None]:
    """(config_path, the auth username for h.example, the X-Src header) containerd runs with."""
    auth = e.auth("h.example") or {}
    headers = e.registry.get("headers") or {}
    return e.config_path, auth.get("username"), (headers.get("X-Src") or [None])[0]


def check(texts: tuple[str, ...], release: ContainerdVersion, want: object) -> None:
    e = effective_config(files(*texts), release)
    if isinstance(want, Refused):
        assert e.problems, (release, seen(e))
        assert any(want.words in p for p in e.problems), e.problems
    else:
        assert e.problems == ()
        assert seen(e) == want


V1 = ("/v1", "u-v1", "v1")
V2 = ("/v2", "u-v2", "v2")
V3 = ("/v3", "u-v3", "v3")
V4 = ("/v4", "u-v4", "v4")
# name -> (config.toml, what 1.6.20, 1.7.24, 2.0.11 and 2.3.4 read)
SINGLE: dict[str, tuple[str, tuple[object, object, object, object]]] = {
    "v1 short, no version line": (reg(SHORT, *V1), (V1, V1, NONE, V1)),
    "v1 short, version = 1": (v(1) + reg(SHORT, *V1), (V1, V1, NONE, V1)),
    "v1 long plugin name": (reg(OLD, *V1), (NONE, NONE, NONE, V1)),
    "v2": (v(2) + reg(OLD, *V2), (V2, V2, V2, V2)),
    "v2 short plugin name": (v(2) + reg(SHORT, *V2), (Refused('plugin key "cri"'), Refused('plugin key "cri"'), NONE, NONE)),
    # The old table replaces the images one as a whole: its header is gone.
    "v2 both tables": (v(2) + reg(OLD, "/v2", "u-v2") + reg(NEW, *V3), ((*V2[:2], None),) * 4),
    "v2 AKS shape": (v(2) + f'[{OLD}]\n  sandbox_image = "pause:3.9"\n' + reg(NEW, *V3), (NONE, NONE, V3, V3)),
    "v3": (v(3) + reg(NEW, *V3), (NONE, Refused("refuses config version 3"), V3, V3)),
    "v3 leftover": (v(3) + reg(NEW, *V3) + reg(OLD, *V2), (V2, ERR, V3, V2)),
    "v3 leftover with only configs": (
        v(3) + reg(NEW, *V3) + reg(OLD, user="u-v2"),
        ((None, "u-v2", None), ERR, V3, (None, "u-v2", None)),
    ),
    "v4": (v(4) + reg(NEW, *V4), (NONE, ERR, Refused("refuses config version 4 (the max is 3)"), V4)),
    "v4 leftover": (v(4) + reg(NEW, *V4) + reg(OLD, *V2), (V2, ERR, ERR, V4)),
}


@pytest.mark.parametrize(
    ("name", "release", "want"),
    [(name, r, want) for name, (_, wants) in SINGLE.items() for r, want in zip(RELEASES, wants, strict=True)],
    ids=str,
)
def test_one_file(name: str, release: ContainerdVersion, want: object) -> None:
    check((SINGLE[name][0],), release, want)


MAIN_V2 = ("/main", "u-main", "main")
DROP_V = ("/drop", "u-drop", None)
HIGHER = Refused("drop-in config version 3 higher than root config version 2")
# name -> (config.toml, conf.d/10.toml, what 1.6.20, 1.7.24, 2.0.11 and 2.3.4 read)
DROP_INS: dict[str, tuple[str, str, tuple[object, object, object, object]]] = {
    # 1.x replaces the whole plugin table a drop-in names; 2.x merges key by key.
    "credentials only": (
        v(2) + reg(OLD, *MAIN_V2),
        v(2) + reg(OLD, user="u-drop"),
        ((None, "u-drop", None),) * 2 + (("/main", "u-drop", "main"),) * 2,
    ),
    "other CRI setting": (
        v(2) + reg(OLD, *MAIN_V2),
        v(2) + f'[{OLD}]\n  sandbox_image = "pause:drop"\n',
        (NONE, NONE, MAIN_V2, MAIN_V2),
    ),
    "empty config_path": (
        v(2) + reg(OLD, *MAIN_V2),
        v(2) + f'[{OLD}.registry]\n  config_path = ""\n',
        (NONE, NONE, (None, "u-main", "main"), (None, "u-main", "main")),
    ),
    "unrelated plugin": (
        v(2) + reg(OLD, *MAIN_V2),
        v(2) + '[plugins."io.containerd.runtime.v1.linux"]\n  shim_debug = true\n',
        (MAIN_V2,) * 4,
    ),
    # A version 3 drop-in turns 2.0's migration of the main file off; 2.3 refuses it.
    "v2 main, v3 drop-in": (v(2) + reg(OLD, *MAIN_V2), v(3) + reg(NEW, "/drop", "u-drop"), (MAIN_V2, ERR, DROP_V, HIGHER)),
    "v2 main, v3 drop-in without registry": (
        v(2) + reg(OLD, *MAIN_V2),
        v(3) + f'[{NEW}]\n  snapshotter = "native"\n',
        (MAIN_V2, ERR, NONE, HIGHER),
    ),
    # 2.0 migrates a versionless drop-in without the CRI step; 2.3 with it.
    "v3 main, versionless drop-in": (
        v(3) + reg(NEW, "/main", "u-main"),
        reg(OLD, "/drop", "u-drop"),
        (DROP_V, ERR, ("/main", "u-main", None), DROP_V),
    ),
    "v3 main, v3 drop-in with a leftover": (
        v(3) + reg(NEW, "/main", "u-main"),
        v(3) + reg(OLD, "/drop", "u-drop"),
        (DROP_V, ERR, ("/main", "u-main", None), DROP_V),
    ),
    "v3 main, v2 drop-in": (
        v(3) + reg(NEW, *MAIN_V2),
        v(2) + reg(OLD, user="u-drop"),
        ((None, "u-drop", None),) * 3 + (("/main", "u-drop", "main"),),
    ),
    # 2.0 migrates after the merge (the old table wins); 2.3 per file (the later file wins).
    "v2 old table, then v2 images table": (
        v(2) + reg(OLD, "/main", "u-main"),
        v(2) + reg(NEW, "/drop", "u-drop"),
        (("/main", "u-main", None),) * 3 + (DROP_V,),
    ),
    "v4 main, v3 drop-in": (
        v(4) + reg(NEW, "/main", "u-main"),
        v(3) + reg(NEW, user="u-drop"),
        (NONE, ERR, ("/main", "u-drop", None), ("/main", "u-drop", None)),
    ),
    "v3 main, v4 drop-in": (
        v(3) + reg(NEW, "/main"),
        v(4) + reg(NEW, "/drop"),
        (NONE, ERR, ERR, Refused("version 4 higher than root config version 3")),
    ),
    "versionless main, v3 drop-in": (
        reg(OLD, "/main"),
        v(3) + reg(NEW, user="u-drop"),
        (("/main", None, None), ERR, (None, "u-drop", None), ("/main", "u-drop", None)),
    ),
}


@pytest.mark.parametrize(
    ("name", "release", "want"),
    [(name, r, want) for name, (*_, wants) in DROP_INS.items() for r, want in zip(RELEASES, wants, strict=True)],
    ids=str,
)
def test_main_file_and_one_drop_in(name: str, release: ContainerdVersion, want: object) -> None:
    main, drop, _ = DROP_INS[name]
    check((main, drop), release, want)


def test_the_problems_name_the_file_containerd_refuses() -> None:
    (problem,) = effective_config(files(*DROP_INS["v2 main, v3 drop-in"][:2]), R23).problems
    assert problem.startswith(f"{DROP}: ") and "refuses to start" in problem


@pytest.mark.parametrize("release", RELEASES, ids=str)
def test_a_missing_import_is_a_problem_and_nothing_after_it_is_read(release: ContainerdVersion) -> None:
    fs = [*files(v(2) + reg(OLD, "/main")), ConfigFile("/etc/containerd/absent.toml", None), *files(v(2) + reg(OLD, "/drop"))]
    e = effective_config(fs, release)
    assert len(e.problems) == 1 and e.problems[0].startswith("/etc/containerd/absent.toml: imported but does not exist")
    assert "/drop" not in repr(e.registry)
    if release >= R20:  # `config dump` stops reading there and shows what it read so far
        assert e.config_path == "/main"


@pytest.mark.parametrize("release", RELEASES, ids=str)
def test_a_version_1_file_naming_the_cri_plugin_both_ways(release: ContainerdVersion) -> None:
    e = effective_config(files(reg(SHORT, "/short") + reg(OLD, "/long")), release)
    if release < R20:  # 1.x looks the plugin up by its short name only
        assert e.problems == () and e.config_path == "/short"
    else:  # 2.x renames `cri` over the long table, in a Go map's order
        (problem,) = e.problems
        assert problem.startswith(f"{MAIN}: ") and "[plugins.cri]" in problem and "at random" in problem


def test_first_change_names_the_file_after_which_containerd_reads_something_else() -> None:
    fs = files(
        v(2) + reg(OLD, "/main", "u-main"),
        v(2) + f'[{OLD}]\n  sandbox_image = "pause:drop"\n',
        v(2) + reg(OLD, "/other"),
    )
    moved = lambda e: e.config_path != "/main"  # noqa: E731
    assert first_change(fs, R20, moved) == "/etc/containerd/conf.d/11.toml"
    assert first_change(fs, R23, moved) == "/etc/containerd/conf.d/11.toml"
    # 1.x: the sandbox_image drop-in already replaced the whole CRI table.
    assert first_change(fs, R16, moved) == "/etc/containerd/conf.d/10.toml"
    # Credentials: only 1.x loses them, at the first drop-in.
    lost = lambda e: e.auth("h.example") is None  # noqa: E731
    assert first_change(fs, R16, lost) == "/etc/containerd/conf.d/10.toml"
    assert first_change(fs, R20, lost) is None


def test_first_change_is_none_when_the_main_file_already_differs_or_nothing_does() -> None:
    fs = files(v(2) + reg(OLD, "/main"), v(2) + reg(OLD, "/drop"))
    assert first_change(fs, R20, lambda e: e.config_path != "/elsewhere") is None
    assert first_change(fs, R20, lambda e: e.config_path is None) is None
    assert first_change([], R20, lambda e: True) is None


@pytest.mark.parametrize(
    ("imports", "path", "release", "want"),
    [
        (["/etc/containerd/conf.d/*.toml"], MAIN, R16, ["/etc/containerd/conf.d/*.toml"]),
        # A relative glob: 1.6 globs it from its working directory (/ under systemd); later
        # releases from the importing file's directory.
        (["conf.d/*.toml"], MAIN, R16, ["/conf.d/*.toml"]),
        (["conf.d/*.toml"], MAIN, R17, ["/etc/containerd/conf.d/*.toml"]),
        (["conf.d/*.toml"], MAIN, R23, ["/etc/containerd/conf.d/*.toml"]),
        # A relative path without a glob is the importing file's, on every release.
        (["d/a.toml"], MAIN, R16, ["/etc/containerd/d/a.toml"]),
        (["nested/n.toml"], "/etc/containerd/d/a.toml", R20, ["/etc/containerd/d/nested/n.toml"]),
        (
            ["../config.toml", "./x//y.toml"],
            "/etc/containerd/d/a.toml",
            R20,
            ["/etc/containerd/config.toml", "/etc/containerd/d/x/y.toml"],
        ),
        # A list keeps its order; what containerd could not read as a path is no import.
        (["b.toml", "a.toml"], MAIN, R23, ["/etc/containerd/b.toml", "/etc/containerd/a.toml"]),
        ([1, "", "a.toml"], MAIN, R20, ["/etc/containerd/a.toml"]),
        ("a.toml", MAIN, R20, []),
    ],
)
def test_import_patterns(imports: object, path: str, release: ContainerdVersion, want: list[str]) -> None:
    assert import_patterns({"imports": imports}, path, release) == want
