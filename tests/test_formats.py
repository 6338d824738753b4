"""Inputs in other tools' formats: detection, translation (goldens), refusals, credentials, secrets.

Each format's example input is converted (`nodecfg convert`) and compared with a golden file in
tests/golden/formats/ (UPDATE_GOLDEN=1 to regenerate, then review); then it is applied to a
Debian-shaped node and the credentials are read back from config.toml.
"""

from __future__ import annotations

import base64
import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from nodecfg.spec.formats import detect_format
from nodecfg.spec.loader import SpecError, load_input
from tests.conftest import node_args, run

GOLDEN = Path(__file__).parent / "golden" / "formats"
HUB_PASSWORD = "k3s-Hub-pa55-never-shown"
AUTHJSON_PASSWORD = "authjson-pa55-never-shown"

K3S = f"""\
mirrors:
  docker.io:
    endpoint:
      - "https://mirror.example.com:5000"
      - "https://harbor.example.com/v2/dockerhub"
      - "https://registry-1.docker.io"
  "*":
    endpoint: ["https://cache.example.com"]
  registry.example.com:
    endpoint: ["http://registry.example.com"]
configs:
  "mirror.example.com:5000":
    auth:
      username: hubuser
      password: {HUB_PASSWORD}
    tls:
      ca_file: ca.crt
  "registry.example.com":
    auth:
      auth: {base64.b64encode(b"plainuser:plain-pa55-never-shown").decode()}
  "secure.example.com":
    tls:
      insecure_skip_verify: true
"""
AUTH_JSON = {
    "quay.io": {"username": "quayuser", "password": AUTHJSON_PASSWORD},
    "quay.io/coreos": {"username": "other", "password": "other-pa55-never-shown"},
    "registry.cn-hangzhou.aliyuncs.com/ns": {"username": "${ALI_USER}", "password": "${ALI_PASSWORD}"},
    "10.0.0.5:5000": {"username": "local", "password": "local-pa55-never-shown", "insecure": True},
}
RULES = [
    {"repositoryPrefix": "docker.io", "replaceWith": "harbor.example.com/dockerhub-proxy"},
    {"repositoryPrefix": "ghcr.io", "replaceWith": "mirror.example.com"},
    {"repositoryPrefix": "", "replaceWith": "http://cache.example.com:5000"},
]
DOCKERCONFIG = {"auths": {"https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:dockercfg-pa55-never-shown").decode()}}}
SECRETS = (HUB_PASSWORD, AUTHJSON_PASSWORD, "plain-pa55-never-shown", "other-pa55", "local-pa55", "dockercfg-pa55", "ali-pa55")
ENV = {"ALI_USER": "aliuser", "ALI_PASSWORD": "ali-pa55-never-shown"}
CA = (Path(__file__).parent.parent / "examples/secrets/ca.crt").read_text()


def write(tmp_path: Path, name: str, content: Any) -> Path:
    p = tmp_path / "input" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(content if isinstance(content, str) else json.dumps(content, indent=2))
    (p.parent / "ca.crt").write_text(CA)
    return p


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


def auths(root: Path) -> dict[str, dict[str, str]]:
    config = tomllib.loads((root / "etc/containerd/config.toml").read_text())
    configs = config["plugins"]["io.containerd.grpc.v1.cri"]["registry"].get("configs", {})
    return {host: entry["auth"] for host, entry in configs.items()}


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        ({"version": 1}, "nodecfg"),
        ({"mirrors": {}}, "k3s"),
        ({"configs": {}}, "k3s"),
        (DOCKERCONFIG, "dockerconfigjson"),
        ({"reg.example": {"auth": "eDp5", "email": "a@b"}}, "dockerconfigjson"),
        (AUTH_JSON, "auth-json"),
        (RULES, "image-rules"),
        ([], "image-rules"),
        ({"registries": {}}, "nodecfg"),  # version missing: said by validation
        ({"reg.example": {}}, None),
        ("text", None),
    ],
)
def test_formats_are_detected(data, fmt):
    assert detect_format(data) == fmt


def test_k3s_translation_and_credentials(root, tmp_path):
    config = write(tmp_path, "registries.yaml", K3S)
    rc, out, err = run("convert", "--config", str(config))
    assert rc == 0, err
    golden("k3s.yaml", out)
    rc, out, err = run("apply", *node_args(root, config))
    assert rc == 0, err
    got = auths(root)
    assert got["mirror.example.com:5000"] == {"username": "hubuser", "password": HUB_PASSWORD}
    assert got["registry.example.com"]["username"] == "plainuser"
    hub = (root / "etc/containerd/certs.d/docker.io/hosts.toml").read_text()
    assert '[host."https://harbor.example.com/v2/dockerhub"]\ncapabilities = ["pull", "resolve"]\noverride_path = true' in hub
    assert "registry-1.docker.io" not in hub.split("[host", 1)[1], "the upstream is not listed as a mirror"
    assert 'server = "http://registry.example.com"' in (root / "etc/containerd/certs.d/registry.example.com/hosts.toml").read_text()  # fmt: skip
    assert "skip_verify = true" in (root / "etc/containerd/certs.d/secure.example.com/hosts.toml").read_text()
    assert "ca = " in hub


def test_k3s_rewrite_is_refused_with_the_reason_and_line(tmp_path):
    text = 'mirrors:\n  docker.io:\n    endpoint: ["https://m.example"]\n    rewrite:\n      "^rancher/(.*)": "mirror/$1"\n'
    with pytest.raises(SpecError) as e:
        load_input(text, "registries.yaml")
    (p,) = e.value.problems
    assert p.line == 4 and p.location == 'mirrors."docker.io".rewrite'
    assert "containerd cannot rewrite repository paths" in p.message


def test_auth_json_translation_and_longest_match_rule(root, tmp_path):
    config = write(tmp_path, "auth.json", AUTH_JSON)
    rc, out, err = run("convert", "--config", str(config))
    assert rc == 0, err
    golden("auth-json.yaml", out)
    assert "quay.io/coreos': not used" in err  # the host's own entry wins for every image on it
    rc, out, err = run("apply", *node_args(root, config), env=ENV)
    assert rc == 0, err
    got = auths(root)
    assert got["quay.io"] == {"username": "quayuser", "password": AUTHJSON_PASSWORD}
    assert got["registry.cn-hangzhou.aliyuncs.com"] == {"username": "aliuser", "password": "ali-pa55-never-shown"}
    assert got["10.0.0.5:5000"]["username"] == "local"
    assert 'server = "http://10.0.0.5:5000"' in (root / "etc/containerd/certs.d/10.0.0.5:5000/hosts.toml").read_text()


def test_auth_json_missing_env_is_a_clear_error(root, tmp_path):
    config = write(tmp_path, "auth.json", AUTH_JSON)
    rc, out, err = run("diff", *node_args(root, config))
    assert rc == 2
    assert "environment variable ALI_USER is not set" in err
    assert not any(s in out + err for s in SECRETS)


def test_auth_json_namespace_entries_that_disagree_are_refused(tmp_path):
    data = {"reg.example/a": {"username": "u1", "password": "p1"}, "reg.example/b": {"username": "u2", "password": "p2"}}
    with pytest.raises(SpecError) as e:
        load_input(json.dumps(data), "auth.json")
    assert "carry different credentials for one host, reg.example" in str(e.value)
    assert "p1" not in str(e.value) and "p2" not in str(e.value)


def test_image_rules_translation(root, tmp_path):
    config = write(tmp_path, "rules.json", RULES)
    rc, out, err = run("convert", "--config", str(config))
    assert rc == 0, err
    golden("image-rules.yaml", out)
    assert run("apply", *node_args(root, config))[0] == 0
    hub = (root / "etc/containerd/certs.d/docker.io/hosts.toml").read_text()
    # fallback false: the replacement is the server, the original registry is never contacted
    assert 'server = "https://harbor.example.com/v2/dockerhub-proxy"' in hub and "override_path = true" in hub
    assert 'server = "http://cache.example.com:5000"' in (root / "etc/containerd/certs.d/_default/hosts.toml").read_text()


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"repositoryPrefix": "docker.io/library", "replaceWith": "m.example"}, "has a path"),
        ({"repositoryPrefix": "nginx", "replaceWith": "m.example"}, "is a path on docker.io"),
        ({"repositoryPrefix": "docker.io", "replaceWith": ""}, "must not be empty"),
        ({"repositoryPrefix": "docker.io", "with": "x"}, "a rule is"),
    ],
)
def test_image_rules_containerd_cannot_express_are_refused(rule, message):
    with pytest.raises(SpecError) as e:
        load_input(json.dumps([rule]), "rules.json")
    assert message in str(e.value)


def test_dockerconfigjson_as_the_input(root, tmp_path):
    config = write(tmp_path, "config.json", DOCKERCONFIG)
    rc, out, err = run("apply", *node_args(root, config))
    assert rc == 0, err
    assert auths(root)["registry-1.docker.io"]["username"] == "hub"
    rc, out, _ = run("validate", "-o", "json", *node_args(root, config))
    assert json.loads(out)["format"] == "dockerconfigjson"


def test_json_indented_with_tabs_is_read(tmp_path):
    text = '[\n\t{"repositoryPrefix": "docker.io", "replaceWith": "m.example"}\n]\n'
    assert load_input(text, "rules.json").format == "image-rules"


def test_unknown_format_says_what_is_accepted(tmp_path):
    with pytest.raises(SpecError, match="pass --format"):
        load_input("images:\n  - nginx\n", "x.yaml")


def test_format_flag_overrides_detection(root, tmp_path):
    config = write(tmp_path, "registries.yaml", "mirrors: {}\n")
    rc, _, err = run("validate", "--format", "nodecfg", *node_args(root, config))
    assert rc == 2 and "version" in err


def test_credentials_files_can_be_named_from_a_nodecfg_input(root, tmp_path):
    write(tmp_path, "auth.json", AUTH_JSON)
    write(tmp_path, "k3s.yaml", K3S)
    config = write(
        tmp_path,
        "registries.yaml",
        "version: 1\ncredentials:\n  - authJSON: auth.json\n  - k3sRegistries: k3s.yaml\n",
    )
    rc, out, err = run("apply", *node_args(root, config), env=ENV)
    assert rc == 0, err
    assert {"quay.io", "mirror.example.com:5000", "registry.example.com"} <= set(auths(root))
    rc, out, err = run("diff", *node_args(root, config), env=ENV)
    assert rc == 0 and not any(s in out + err for s in SECRETS)


def test_no_secret_in_any_output(root, tmp_path):
    for name, content in (("k3s.yaml", K3S), ("auth.json", AUTH_JSON), ("rules.json", RULES), ("c.json", DOCKERCONFIG)):
        config = write(tmp_path, name, content)
        for cmd in ("convert", "validate", "diff"):
            rc, out, err = run(cmd, *node_args(root, config), env=ENV)
            assert rc in (0, 1), err
            assert not any(s in out + err for s in SECRETS), (name, cmd)


def test_k3s_identity_token_and_unknown_auth_fields(root, tmp_path):
    text = 'configs:\n  "reg.example":\n    auth:\n      identity_token: tok-never-shown-123\n'
    config = write(tmp_path, "registries.yaml", text)
    assert run("apply", *node_args(root, config))[0] == 0
    assert auths(root)["reg.example"] == {"identitytoken": "tok-never-shown-123"}
    write(tmp_path, "registries.yaml", 'configs:\n  "reg.example":\n    auth:\n      token: x\n')
    rc, out, err = run("diff", *node_args(root, config))
    assert rc == 2 and "configs.'reg.example'.auth: unknown field(s) token" in err
    assert "tok-never-shown" not in out + err


def test_k3s_credentials_file_bomb_is_refused(root, tmp_path):
    levels = [
        "configs:",
        '  "r.example":',
        "    auth: {username: u, password: p}",
        "x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]",
    ]
    levels += [f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    write(tmp_path, "k3s.yaml", "\n".join(levels) + "\n")
    config = write(tmp_path, "registries.yaml", "version: 1\ncredentials:\n  - k3sRegistries: k3s.yaml\n")
    rc, _, err = run("validate", *node_args(root, config))
    assert rc == 2
    assert (
        "credentials[0].k3sRegistries: invalid YAML at line 9: aliases expand to more than 100000 values "
        '(nested anchors and aliases, a "billion laughs" document)'
    ) in err
