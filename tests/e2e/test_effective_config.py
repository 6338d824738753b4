"""nodecfg's model of containerd's loader against the release's own `config dump`, shape by shape.

`nodecfg/containerd/effective.py` says which `config_path`, credentials and headers containerd
runs with for a config.toml and the files it imports. Each case below is a set of files that tells
the tables apart by their values; the test loads it with the release under test (`containerd
--config <main> config dump`, which merges and migrates as the daemon does) and with the model,
and compares. A file set the release refuses must be one the model reports problems for. Runs on
every release of the suite, so a rule that only 2.3+ follow (a leftover table winning, per-file
migration, the drop-in version check) fails here on those releases first.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from nodecfg.containerd.effective import ConfigFile, effective_config
from nodecfg.node.config_files import imported_files
from nodecfg.node.paths import NodePaths
from tests.e2e.releases import V2_0, Release

CONTAINERD = shutil.which("containerd")
pytestmark = pytest.mark.skipif(CONTAINERD is None, reason="needs containerd: apt-get update && apt-get install -y containerd")

OLD = 'plugins."io.containerd.grpc.v1.cri"'
NEW = 'plugins."io.containerd.cri.v1.images"'
SHORT = "plugins.cri"
DROP_INS = '"{D}/conf.d/*.toml"'


def registry(table: str, path: str | None = None, user: str | None = None, header: str | None = None) -> str:
    """A registry table under plugin `table` whose values say where they came from."""
    out = ""
    if path is not None:
        out += f'[{table}.registry]\n  config_path = "{path}"\n'
    if user is not None:
        out += f'[{table}.registry.configs."r.example".auth]\n  username = "{user}"\n'
    if header is not None:
        out += f'[{table}.registry.headers]\n  X-From = ["{header}"]\n'
    return out


def v(n: int | None) -> str:
    return "" if n is None else f"version = {n}\n"


def main_with_imports(n: int | None, *imports: str) -> str:
    return v(n) + f"imports = [{', '.join(imports)}]\n"


# name -> files (path relative to the case directory -> text; "{D}" is that directory).
CASES: dict[str, dict[str, str]] = {
    # One file.
    "v1-short": {"config.toml": registry(SHORT, "/v1", "u-v1", "v1")},
    "v1-long-name": {"config.toml": v(1) + registry(OLD, "/v1", "u-v1", "v1")},
    "v2": {"config.toml": v(2) + registry(OLD, "/v2", "u-v2", "v2")},
    "v2-both-tables": {"config.toml": v(2) + registry(OLD, "/v2", "u-v2", "v2") + registry(NEW, "/v3", "u-v3", "v3")},
    "v2-images-table-only": {
        "config.toml": v(2) + f'[{OLD}]\n  sandbox_image = "pause:3.9"\n' + registry(NEW, "/v3", "u-v3", "v3")
    },
    "v3": {"config.toml": v(3) + registry(NEW, "/v3", "u-v3", "v3")},
    "v3-leftover": {"config.toml": v(3) + registry(NEW, "/v3", "u-v3", "v3") + registry(OLD, "/v2", "u-v2", "v2")},
    "v3-leftover-credentials-only": {"config.toml": v(3) + registry(NEW, "/v3", "u-v3", "v3") + registry(OLD, user="u-v2")},
    "v3-old-plugin-without-registry": {"config.toml": v(3) + registry(NEW, "/v3", "u-v3") + f'[{OLD}]\n  sandbox_image = "p"\n'},
    "v4": {"config.toml": v(4) + registry(NEW, "/v4", "u-v4", "v4")},
    "v4-leftover": {"config.toml": v(4) + registry(NEW, "/v4", "u-v4") + registry(OLD, "/v2", "u-v2")},
    # Imports.
    "drop-in-whole-registry": {
        "config.toml": main_with_imports(2, DROP_INS) + registry(OLD, "/main", "u-main", "main"),
        "conf.d/10.toml": v(2) + registry(OLD, "/drop", "u-drop", "drop"),
    },
    "drop-in-credentials-only": {
        "config.toml": main_with_imports(2, DROP_INS) + registry(OLD, "/main", "u-main", "main"),
        "conf.d/10.toml": v(2) + registry(OLD, user="u-drop"),
    },
    "drop-in-other-cri-setting": {
        "config.toml": main_with_imports(2, DROP_INS) + registry(OLD, "/main", "u-main"),
        "conf.d/10.toml": v(2) + f'[{OLD}]\n  sandbox_image = "pause:drop"\n',
    },
    "v3-drop-in-credentials-only": {
        "config.toml": main_with_imports(3, DROP_INS) + registry(NEW, "/main", "u-main", "main"),
        "conf.d/10.toml": v(3) + registry(NEW, user="u-drop"),
    },
    "v3-drop-in-empty-config-path": {
        "config.toml": main_with_imports(3, DROP_INS) + registry(NEW, "/main", "u-main"),
        "conf.d/10.toml": v(3) + f'[{NEW}.registry]\n  config_path = ""\n',
    },
    "v2-main-v3-drop-in": {
        "config.toml": main_with_imports(2, DROP_INS) + registry(OLD, "/main", "u-main"),
        "conf.d/10.toml": v(3) + f'[{NEW}]\n  snapshotter = "native"\n',
    },
    "v3-main-v2-drop-in": {
        "config.toml": main_with_imports(3, DROP_INS) + registry(NEW, "/main", "u-main", "main"),
        "conf.d/10.toml": v(2) + registry(OLD, user="u-drop"),
    },
    "v3-main-versionless-drop-in": {
        "config.toml": main_with_imports(3, DROP_INS) + registry(NEW, "/main", "u-main"),
        "conf.d/10.toml": registry(OLD, "/drop", "u-drop"),
    },
    "v3-drop-in-with-leftover": {
        "config.toml": main_with_imports(3, DROP_INS) + registry(NEW, "/main", "u-main"),
        "conf.d/10.toml": v(3) + registry(OLD, "/drop", "u-drop"),
    },
    "v2-old-then-new-table": {
        "config.toml": main_with_imports(2, DROP_INS) + registry(OLD, "/main", "u-main"),
        "conf.d/10.toml": v(2) + registry(NEW, "/drop", "u-drop"),
    },
    "v4-main-v3-drop-in": {
        "config.toml": main_with_imports(4, DROP_INS) + registry(NEW, "/main", "u-main"),
        "conf.d/10.toml": v(3) + registry(NEW, user="u-drop"),
    },
    "v3-main-v4-drop-in": {
        "config.toml": main_with_imports(3, DROP_INS) + registry(NEW, "/main", "u-main"),
        "conf.d/10.toml": v(4) + registry(NEW, "/drop"),
    },
    "versionless-main-v2-drop-in": {
        "config.toml": main_with_imports(None, DROP_INS) + registry(SHORT, "/main", "u-main"),
        "conf.d/10.toml": v(2) + registry(OLD, "/drop"),
    },
    "glob-order-and-nesting": {
        "config.toml": main_with_imports(2, '"{D}/d/b.toml"', '"{D}/d/a.toml"', '"{D}/conf.d/*.toml"') + registry(OLD, "/main"),
        "d/a.toml": v(2) + 'imports = ["nested/n.toml"]\n' + registry(OLD, "/a"),
        "d/b.toml": v(2) + registry(OLD, "/b", "u-b"),
        "d/nested/n.toml": v(2) + registry(OLD, user="u-nested"),
        "conf.d/9.toml": v(2) + registry(OLD, "/9"),
        "conf.d/10.toml": v(2) + registry(OLD, "/10"),
    },
    "relative-import-and-cycle": {
        "config.toml": main_with_imports(2, '"d/a.toml"', '"d/a.toml"') + registry(OLD, "/main"),
        "d/a.toml": v(2) + 'imports = ["../config.toml"]\n' + registry(OLD, "/a", "u-a"),
    },
    "missing-import": {
        "config.toml": main_with_imports(2, '"{D}/absent.toml"') + registry(OLD, "/main", "u-main"),
    },
}


def _write(d: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text.replace("{D}", str(d)))
    return d / "config.toml"


def _seen(registry: dict) -> tuple:
    auth = ((registry.get("configs") or {}).get("r.example") or {}).get("auth") or {}
    return registry.get("config_path") or None, auth.get("username") or None, (registry.get("headers") or {}).get("X-From")


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_model_reads_what_the_release_reads(case: str, tmp_path: Path, release: Release) -> None:
    main = _write(tmp_path, CASES[case])
    out = subprocess.run(
        [CONTAINERD, "--config", str(main), "config", "dump"], capture_output=True, text=True, timeout=60, check=False
    )
    plain = tomllib.loads(main.read_text())
    files = [ConfigFile(str(main), plain), *imported_files(NodePaths(containerd_config=str(main)), plain, release.version)]
    model = effective_config(files, release.version)
    missing = [f for f in files if f.plain is None]
    if out.returncode != 0:
        assert model.problems, (case, out.stderr[-500:])
        return
    if missing and release.version >= V2_0:
        # `config dump` of 2.x says nothing about a missing import (it stops reading there); the
        # daemon refuses to start. The model says so and reads what the dump read.
        assert any("does not exist" in p for p in model.problems)
    else:
        assert not model.problems, (case, model.problems)
    plugin = "io.containerd.cri.v1.images" if release.version >= V2_0 else "io.containerd.grpc.v1.cri"
    dumped = tomllib.loads(out.stdout)["plugins"].get(plugin, {}).get("registry") or {}
    if release.version < V2_0 and model.version < 2:
        dumped = tomllib.loads(out.stdout)["plugins"].get("cri", {}).get("registry") or dumped
    assert _seen(dict(model.registry)) == _seen(dumped), case
