"""The edited config.toml as the real containerd reads it (`containerd --config X config dump`).

`config dump` prints the merged config containerd would run with; parsing it shows whether
config_path and the auth entries landed in the table containerd actually reads (a typo, a wrong
table or a version mix-up silently drops them: docs/containerd.md). Runs on every release of the
suite: 2.x shows the registry under `io.containerd.cri.v1.images`, migrated from a version 2
file's `io.containerd.grpc.v1.cri`; 2.0-2.2 drop a version 1 file's registry table altogether,
2.3+ read it again.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib

import pytest

from nodecfg.containerd.errors import ConfigError
from tests.conftest import node_args, run
from tests.e2e.releases import V2_0, Release
from tests.test_apply import EXPECTED_FILES, copy_example
from tests.test_containerd_config import edit

CONTAINERD = shutil.which("containerd")
pytestmark = pytest.mark.skipif(CONTAINERD is None, reason="needs containerd: apt-get update && apt-get install -y containerd")


def dump(path) -> dict:
    out = subprocess.run(
        [CONTAINERD, "--config", str(path), "config", "dump"], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    return tomllib.loads(out.stdout)


def dumped_registry(path, release: Release) -> dict:
    """The registry table the release's CRI reads, as its `config dump` shows it."""
    plugin = "io.containerd.cri.v1.images" if release.version >= V2_0 else "io.containerd.grpc.v1.cri"
    return dump(path)["plugins"][plugin]["registry"]


# Hosts that must get configs."<host>".auth: the mirror or registry contacted, including hosts that
# only come from a .dockerconfigjson file.
EXPECTED_AUTH = {
    "registries.yaml": {"harbor.corp.example", "registry.corp.example:5000"},
    "pull-secret.yaml": {"registry.corp.example:5000"},
    "override-path.yaml": {"harbor.corp.example"},
}


@pytest.mark.parametrize("example", sorted(EXPECTED_FILES))
def test_containerd_reads_config_path_and_auth_from_the_edited_file(example, root, tmp_path, release):
    config = copy_example(tmp_path, example)
    assert run("apply", *node_args(root, config, release.name))[0] == 0
    registry = dumped_registry(root / "etc/containerd/config.toml", release)
    assert registry["config_path"] == "/etc/containerd/certs.d"
    assert not registry.get("mirrors")
    configs = registry.get("configs") or {}
    assert {h for h, c in configs.items() if c.get("auth", {}).get("username")} == EXPECTED_AUTH.get(example, set())


@pytest.mark.parametrize(
    "src",
    [
        "version = 2\n[plugins.'io.containerd.grpc.v1.cri']\n  registry.config_path = ''\n  sandbox_image = 'x'\n",
        'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nregistry = { config_path = "" }\n',
        "[plugins.cri]\n  sandbox_image = 'pause:3.9'\n[plugins.cri.registry.mirrors.'docker.io']\n  endpoint = ['https://m.example']\n",
        "version = 2\n[plugins.'io.containerd.grpc.v1.cri'.registry.configs.'h.example'.tls]\n  insecure_skip_verify = true\n",
    ],
    ids=["dotted", "inline", "version-1-with-mirrors", "configs-tls"],
)
def test_layouts_as_containerd_reads_them(src, tmp_path, release):
    if not release.reads_version_1_registry_table and "version = 2" not in src:
        # 2.0-2.2 drop a version 1 file's registry table (checked below): nodecfg refuses to edit one.
        with pytest.raises(ConfigError, match="does not read the registry settings"):
            edit(src, target=release.version)
        path = tmp_path / "config.toml"
        path.write_text(edit(src).text)  # what nodecfg would write for 1.x
        assert dumped_registry(path, release)["config_path"] == ""
        return
    path = tmp_path / "config.toml"
    path.write_text(edit(src, target=release.version).text)
    registry = dumped_registry(path, release)
    assert registry["config_path"] == "/etc/containerd/certs.d"
    assert registry["configs"]["registry-1.docker.io"]["auth"] == {
        "username": "bob",
        "password": 'p"w\\d$x',
        "auth": "",
        "identitytoken": "",
    }
    assert not registry.get("mirrors")
    assert all(c.get("tls") is None for c in registry["configs"].values())


def test_candidate_check_with_the_real_binary(tmp_path, release) -> None:
    from nodecfg.node.containerd import check_with_containerd

    hosts = "/etc/containerd/certs.d"
    table = '[plugins."io.containerd.grpc.v1.cri".registry]\n'
    auth = '[plugins."io.containerd.grpc.v1.cri".registry.configs."r.example:5000".auth]\n  username = "u"\n  password = "p"\n'
    cases = {
        "good": (f'version = 2\n{table}  config_path = "{hosts}"\n{auth}', []),
        "typo": (f'version = 2\n{table}  config_pth = "{hosts}"\n{auth}', ["config_path = ''"]),
        # 1.6 ignores a v3 file's tables, 1.7 refuses the file, 2.x reads it (and then misses
        # only the credentials).
        "v3": (
            f'version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = "{hosts}"\n',
            {
                "read": ["credentials for r.example:5000"],
                "refused": ["rejects the candidate", "unsupported config version"],
                "ignored": ["config_path", "credentials"],
            }[release.version_3_file],
        ),
        "v1": (
            f'version = 1\n[plugins.cri.registry]\n  config_path = "{hosts}"\n'
            '[plugins.cri.registry.configs."r.example:5000".auth]\n  username = "u"\n',
            [] if release.reads_version_1_registry_table else ["config_path = ''", "credentials for r.example:5000"],
        ),
        "syntax": (f"version = 2\n{table}  config_path = \n", ["rejects the candidate"]),
        "no auth": (f'version = 2\n{table}  config_path = "{hosts}"\n', ["credentials for r.example:5000"]),
    }
    for name, (text, expected) in cases.items():
        candidate = tmp_path / f"{name}.toml"
        candidate.write_text(text)
        check = check_with_containerd(CONTAINERD, str(candidate), hosts, frozenset({"r.example:5000"}))
        assert check.ran, name
        joined = " | ".join(check.problems)
        if expected:
            assert all(e in joined for e in expected), (name, joined)
        else:
            assert not check.problems, (name, joined)
    missing = check_with_containerd(None, str(tmp_path / "good.toml"), hosts, frozenset())
    assert not missing.ran and "no containerd binary" in missing.note
