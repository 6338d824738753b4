"""render() refuses a config.toml edit that an imported file would override once containerd merges it."""

from __future__ import annotations

import tomllib

import pytest

from nodecfg.containerd.effective import ConfigFile
from nodecfg.containerd.errors import ConfigError
from nodecfg.containerd.legacy import Legacy
from nodecfg.containerd.versions import ContainerdTarget, ContainerdVersion, VersionSource
from nodecfg.render import Layout, Rendered, render
from nodecfg.render.materials import Materials
from nodecfg.spec.loader import load_config

OLD = 'plugins."io.containerd.grpc.v1.cri"'
NEW = 'plugins."io.containerd.cri.v1.images"'
DROP = "/etc/containerd/conf.d/10.toml"
PASSWORD = "Input-Pa55word-7"
NODE_PASSWORD = "Drop-in-Pa55word-9"
INPUT = (
    "version: 1\nregistries:\n  docker.io:\n    mirrors: [https://m.example]\n"
    "credentials:\n  - {registry: reg.example, username: robot, passwordFile: password}\n"
)
MAIN_V2 = 'version = 2\nimports = ["/etc/containerd/conf.d/*.toml"]\n'
MAIN_V3 = 'version = 3\nimports = ["/etc/containerd/conf.d/*.toml"]\n'


def rendered(release: str, current_config: str, drop_in: str) -> Rendered:
    return render(
        load_config(INPUT),
        Materials(files={"password": PASSWORD.encode() + b"\n"}),
        layout=Layout(),
        target=ContainerdTarget(ContainerdVersion.parse(release), VersionSource.FLAG),
        current_config=current_config,
        state_legacy=Legacy(),
        owned_auth_hosts=frozenset(),
        imported=[ConfigFile(DROP, tomllib.loads(drop_in))],
    )


def refused(release: str, current_config: str, drop_in: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        rendered(release, current_config, drop_in)
    for text in (*e.value.problems, str(e.value)):
        assert PASSWORD not in text and NODE_PASSWORD not in text
    return list(e.value.problems)


def node_auth(table: str) -> str:
    return f'[{table}.registry.configs."reg.example".auth]\n  username = "other"\n  password = "{NODE_PASSWORD}"\n'


@pytest.mark.parametrize(
    ("release", "main", "table"),
    [("1.6.20", MAIN_V2, OLD), ("2.0.11", MAIN_V2, OLD), ("2.0.11", MAIN_V3, NEW), ("2.3.4", MAIN_V3, NEW)],
)
def test_a_drop_in_with_another_config_path_and_credentials_is_refused(release: str, main: str, table: str) -> None:
    drop_in = main.split("\n", maxsplit=1)[0] + "\n" + f'[{table}.registry]\n  config_path = "/elsewhere"\n' + node_auth(table)
    path_problem, auth_problem = refused(release, main, drop_in)
    assert f"{DROP}, which /etc/containerd/config.toml imports, overrides it" in path_problem
    assert f"containerd {release} would not read the config_path nodecfg writes" in path_problem
    assert "config_path = '/elsewhere'" in path_problem and path_problem.endswith("nothing was written")
    assert "credentials for reg.example" in auth_problem and DROP in auth_problem


def test_a_drop_in_with_only_other_credentials_is_refused_for_those() -> None:
    (problem,) = refused("2.3.4", MAIN_V3, "version = 3\n" + node_auth(NEW))
    assert "would not read the credentials for reg.example" in problem and f"{DROP}, which" in problem


@pytest.mark.parametrize(
    ("release", "main", "drop_in"),
    [
        ("2.0.11", MAIN_V2, f'version = 2\n[{OLD}]\n  sandbox_image = "pause:drop"\n'),
        ("2.3.4", MAIN_V2, f'version = 2\n[{OLD}]\n  sandbox_image = "pause:drop"\n'),
        ("2.3.4", MAIN_V3, f'version = 3\n[{NEW}]\n  snapshotter = "native"\n'),
        ("1.6.20", MAIN_V2, 'version = 2\n[plugins."io.containerd.runtime.v1.linux"]\n  shim_debug = true\n'),
        # The same config_path and credentials as nodecfg writes: nothing is overridden.
        ("2.3.4", MAIN_V3, f'version = 3\n[{NEW}.registry]\n  config_path = "/etc/containerd/certs.d"\n'),
    ],
)
def test_a_drop_in_that_leaves_the_registry_alone_is_fine(release: str, main: str, drop_in: str) -> None:
    r = rendered(release, main, drop_in)
    plain = tomllib.loads(r.config.text)
    assert plain["imports"] == ["/etc/containerd/conf.d/*.toml"]


def test_on_1_x_a_drop_in_naming_the_cri_plugin_replaces_its_whole_table() -> None:
    drop_in = f'version = 2\n[{OLD}]\n  sandbox_image = "pause:drop"\n'
    path_problem, auth_problem = refused("1.6.20", MAIN_V2, drop_in)
    assert f"{DROP}, which /etc/containerd/config.toml imports, overrides it" in path_problem
    assert "containerd 1.x replaces a plugin's whole table" in path_problem and "it would read no config_path" in path_problem
    assert "credentials for reg.example" in auth_problem and "it would read none for it" in auth_problem


def test_a_drop_in_containerd_refuses_is_refused_with_containerd_s_reason() -> None:
    (problem,) = refused("2.3.4", MAIN_V2, f'version = 3\n[{NEW}.registry]\n  config_path = "/etc/containerd/certs.d"\n')
    assert problem.startswith(f"{DROP}: drop-in config version 3 higher than root config version 2")


def test_a_missing_import_is_refused() -> None:
    with pytest.raises(ConfigError, match="imported but does not exist"):
        render(
            load_config(INPUT),
            Materials(files={"password": PASSWORD.encode()}),
            layout=Layout(),
            target=ContainerdTarget(ContainerdVersion.parse("2.0.11"), VersionSource.FLAG),
            current_config='version = 2\nimports = ["/etc/containerd/extra.toml"]\n',
            state_legacy=Legacy(),
            owned_auth_hosts=frozenset(),
            imported=[ConfigFile("/etc/containerd/extra.toml", None)],
        )


@pytest.mark.parametrize("release", ["1.7.24", "2.1.9", "2.3.4"])
def test_legacy_mirrors_an_imported_file_brings_next_to_config_path_are_refused(release: str) -> None:
    drop_in = f'version = 2\n[{OLD}.registry.mirrors."quay.io"]\n  endpoint = ["https://q.example"]\n'
    with pytest.raises(ConfigError) as e:
        rendered(release, MAIN_V2, drop_in)
    problem = next(p for p in e.value.problems if "`mirrors`" in p)
    assert problem.startswith(f"{DROP}: `mirrors` next to the config_path nodecfg writes")


@pytest.mark.parametrize(
    "imports", ['[1, "/etc/containerd/conf.d/*.toml"]', '["", "/x.toml"]', '"/etc/containerd/conf.d/*.toml"']
)
def test_imports_containerd_cannot_decode_are_refused(imports: str) -> None:
    with pytest.raises(ConfigError) as e:
        rendered("2.3.4", f"version = 2\nimports = {imports}\n", "version = 2\n")
    assert any("imports" in p and "containerd refuses to start" in p for p in e.value.problems)
