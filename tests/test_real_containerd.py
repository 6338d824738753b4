"""The edited config.toml as the real containerd reads it (`containerd --config X config dump`).

`config dump` prints the merged config containerd would run with; parsing it shows whether
config_path and the auth entries landed in the table containerd actually reads (a typo, a wrong
table or a version mix-up silently drops them: reference/containerd.md 3.1).
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib

import pytest

from tests.conftest import node_args, run
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


# Hosts that must get configs."<host>".auth: the mirror or registry contacted, including hosts that
# only come from a .dockerconfigjson file.
EXPECTED_AUTH = {
    "registries.yaml": {"harbor.corp.example", "registry.corp.example:5000"},
    "pull-secret.yaml": {"registry.corp.example:5000"},
    "override-path.yaml": {"harbor.corp.example"},
}


@pytest.mark.parametrize("example", sorted(EXPECTED_FILES))
def test_containerd_reads_config_path_and_auth_from_the_edited_file(example, root, tmp_path):
    config = copy_example(tmp_path, example)
    assert run("apply", *node_args(root, config))[0] == 0
    registry = dump(root / "etc/containerd/config.toml")["plugins"]["io.containerd.grpc.v1.cri"]["registry"]
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
def test_layouts_as_containerd_reads_them(src, tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(edit(src).text)
    registry = dump(path)["plugins"]["io.containerd.grpc.v1.cri"]["registry"]
    assert registry["config_path"] == "/etc/containerd/certs.d"
    assert registry["configs"]["registry-1.docker.io"]["auth"] == {
        "username": "bob",
        "password": 'p"w\\d$x',
        "auth": "",
        "identitytoken": "",
    }
    assert not registry.get("mirrors")
    assert all(c.get("tls") is None for c in registry["configs"].values())


def test_candidate_check_with_the_real_binary(tmp_path) -> None:
    from nodecfg.node.containerd import check_with_containerd

    hosts = "/etc/containerd/certs.d"
    table = '[plugins."io.containerd.grpc.v1.cri".registry]\n'
    auth = '[plugins."io.containerd.grpc.v1.cri".registry.configs."r.example:5000".auth]\n  username = "u"\n  password = "p"\n'
    cases = {
        "good": (f'version = 2\n{table}  config_path = "{hosts}"\n{auth}', []),
        "typo": (f'version = 2\n{table}  config_pth = "{hosts}"\n{auth}', ["config_path = ''"]),
        "v3 on 1.6": (
            f'version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = "{hosts}"\n',
            ["config_path"],
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
