"""`nodecfg explain`: image references, directory choice, endpoint order, and each finding.

Each case builds a node tree by hand (files nodecfg did not write, as on a real node) and checks
the JSON fields that carry the decision; the full text output is compared with a golden file in
tests/golden/explain/ (regenerate with UPDATE_GOLDEN=1 and review the diff).
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from nodecfg.containerd import names
from nodecfg.containerd.hosts_toml import tries_https_first
from nodecfg.containerd.imageref import ReferenceError_, parse_reference
from nodecfg.containerd.versions import ContainerdVersion
from tests.conftest import run

GOLDEN = Path(__file__).parent / "golden" / "explain"
V2 = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n'
STUB = "[host]\n"
DIGEST = "sha256:" + "ab" * 32


def golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(), f"explain output differs from {path}"


def make_node(tmp_path: Path, config: str | None = V2, dirs: dict[str, dict[str, str]] | None = None, root: str = "/etc/containerd/certs.d") -> Path:  # fmt: skip
    node = tmp_path / "node"
    (node / "etc/containerd").mkdir(parents=True)
    if config is not None:
        (node / "etc/containerd/config.toml").write_text(config)
    for d, files in (dirs or {}).items():
        p = node / root.lstrip("/") / d
        p.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (p / name).write_text(textwrap.dedent(content))
    return node


def explain(node: Path, image: str, version: str = "1.6.20", name: str | None = None) -> dict[str, Any]:
    args = ["explain", image, "--root", str(node), "--containerd-version", version]
    rc, out, err = run(*args, "-o", "json")
    assert rc == 0, err
    result: dict[str, Any] = json.loads(out)
    if name is not None:
        rc, text, _ = run(*args)
        assert rc == 0
        golden(name, text)
    return result


def urls(result: dict[str, Any], key: str = "resolves") -> list[str]:
    return [e["url"] for e in result["endpoints"] if e[key]]


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("nginx", "docker.io/library/nginx:latest"),
        ("nginx:1.25", "docker.io/library/nginx:1.25"),
        ("bitnami/redis", "docker.io/bitnami/redis:latest"),
        ("index.docker.io/library/nginx", "docker.io/library/nginx:latest"),
        ("docker.io/nginx", "docker.io/library/nginx:latest"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/app:v1", "localhost:5000/app:v1"),
        ("reg.example:5000/team/app", "reg.example:5000/team/app:latest"),
        ("[fd00::1]:5000/app:1", "[fd00::1]:5000/app:1"),
        (f"nginx:1.25@{DIGEST}", f"docker.io/library/nginx@{DIGEST}"),  # CRI keeps only the digest
        ("Registry/app", "Registry/app:latest"),  # an upper-case first part is a host, as in distribution
    ],
)
def test_references_are_normalised_as_cri_does(text, want):
    assert str(parse_reference(text)) == want


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "empty"),
        ("nginx latest", "no spaces"),
        ("Nginx", "lower-case"),
        ("nginx:", "not a valid tag"),
        ("nginx@sha256:abc", "not a digest"),
        ("reg.example:99999/app", "port must be a number"),
        ("reg.example/../app", "lower-case"),
    ],
)
def test_bad_references_name_the_rule(text, rule):
    with pytest.raises(ReferenceError_, match=rule):
        parse_reference(text)


def test_bad_reference_is_exit_2_and_names_the_value(tmp_path):
    rc, out, err = run("explain", "Nginx:latest", "--root", str(make_node(tmp_path)))
    assert rc == 2 and out == ""
    assert "'Nginx:latest'" in err and "lower-case" in err


def test_docker_hub_mirror_then_upstream(tmp_path):
    node = make_node(tmp_path, dirs={"docker.io": {"hosts.toml": '[host."https://mirror.example"]\n'}})
    r = explain(node, "nginx", name="docker-hub-mirror")
    assert r["image"] == "docker.io/library/nginx:latest"
    assert urls(r) == ["https://mirror.example/v2", "https://registry-1.docker.io/v2"]
    assert r["endpoints"][0]["request"] == "https://mirror.example/v2/library/nginx/manifests/latest?ns=docker.io"
    # docker.io -> registry-1.docker.io is not a proxy: no ?ns=
    assert r["endpoints"][1]["request"] == "https://registry-1.docker.io/v2/library/nginx/manifests/latest"
    assert r["endpoints"][1]["role"] == "upstream"
    assert "not written by nodecfg" in r["source"]


def test_host_port_directory_shadows_the_literal_one(tmp_path):
    node = make_node(
        tmp_path,
        dirs={
            "reg.example_5000_": {"hosts.toml": 'server = "http://reg.example:5000"\n' + STUB},
            "reg.example:5000": {"hosts.toml": '[host."https://never.example"]\n'},
        },
    )
    r = explain(node, "reg.example:5000/app:1", name="host-port-dir")
    assert [c["path"].rsplit("/", 1)[1] for c in r["candidates"] if c["chosen"]] == ["reg.example_5000_"]
    assert urls(r) == ["http://reg.example:5000/v2"]
    assert any("reg.example:5000 exists but is not used" in w for w in r["warnings"])


def test_a_registry_directory_shadows_default_with_a_warning(tmp_path):
    node = make_node(
        tmp_path,
        dirs={
            "_default": {"hosts.toml": 'server = "https://mirror.example"\n' + STUB},
            "quay.io": {"hosts.toml": 'ca = "/etc/ssl/quay.pem"\n' + STUB},
        },
    )
    r = explain(node, "quay.io/coreos/etcd:v3", name="shadowed-default")
    assert urls(r) == ["https://quay.io/v2"]
    assert any("_default exists but is not used for quay.io" in w and "shadows _default" in w for w in r["warnings"])
    # Any other registry takes _default, whose server replaces the upstream entirely.
    r = explain(node, "ghcr.io/org/tool:1")
    assert urls(r) == ["https://mirror.example/v2"]
    assert r["endpoints"][0]["request"].endswith("?ns=ghcr.io")


def test_default_without_server_falls_back_to_each_images_own_registry(tmp_path):
    node = make_node(tmp_path, dirs={"_default": {"hosts.toml": '[host."http://cache.example:5000"]\n'}})
    r = explain(node, "ghcr.io/org/tool:1")
    assert urls(r) == ["http://cache.example:5000/v2", "https://ghcr.io/v2"]
    # _default is not in 1.6.16: containerd goes straight to the registry.
    r = explain(node, "ghcr.io/org/tool:1", version="1.6.16")
    assert urls(r) == ["https://ghcr.io/v2"]
    assert any("has no _default" in w for w in r["warnings"])


def test_root_only_file_is_refused_by_1_6_and_used_by_2_0(tmp_path):
    node = make_node(tmp_path, dirs={"reg.example": {"hosts.toml": 'server = "http://reg.example"\n'}})
    r = explain(node, "reg.example/app:1", name="root-only-1.6")
    assert urls(r) == ["https://reg.example/v2"]
    assert "REFUSED" in r["source"] and "invalid `host` tree" in r["source"]
    assert urls(explain(node, "reg.example/app:1", version="2.0.0")) == ["http://reg.example/v2"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('[host."https://m.example"\n', "not valid TOML"),
        ('[host."https://m.example"]\ncapabilities = ["pull", "resolve", "referrers"]\n', "unknown capability 'referrers'"),
        ('[host."https://m.example"]\ncapabilities = ["pul"]\n', "unknown capability 'pul'"),
        ('[host."https://m.example"]\nskip_verify = "yes"\n', "skip_verify must be true or false"),
        ('[host."https://m.example"]\nclient = [["a", "b", "c"]]\n', "[cert, key] pair"),
        ("server = 5\n[host]\n", "server must be a string"),
    ],
)
def test_every_refused_file_means_the_upstream(tmp_path, content, reason):
    node = make_node(tmp_path, dirs={"reg.example": {"hosts.toml": content}})
    r = explain(node, "reg.example/app:1")
    assert urls(r) == ["https://reg.example/v2"]
    assert "REFUSED" in r["source"] and reason in r["source"], r["source"]


def test_referrers_is_accepted_from_2_2(tmp_path):
    content = '[host."https://m.example"]\ncapabilities = ["pull", "resolve", "referrers"]\n'
    node = make_node(tmp_path, dirs={"reg.example": {"hosts.toml": content}})
    assert urls(explain(node, "reg.example/app:1", version="2.2.0")) == ["https://m.example/v2", "https://reg.example/v2"]


def test_pull_only_mirror_resolves_digests_but_not_tags(tmp_path):
    content = '[host."https://m.example"]\ncapabilities = ["pull"]\n'
    node = make_node(tmp_path, dirs={"reg.example": {"hosts.toml": content}})
    r = explain(node, "reg.example/app:1", name="pull-only-mirror")
    assert urls(r) == ["https://reg.example/v2"]
    assert urls(r, "fetches") == ["https://m.example/v2", "https://reg.example/v2"]
    assert "not asked to resolve '1'" in r["endpoints"][0]["onFailure"]
    r = explain(node, f"reg.example/app@{DIGEST}")
    assert urls(r) == ["https://m.example/v2", "https://reg.example/v2"]


def test_override_path_and_paths(tmp_path):
    content = """\
        [host."https://harbor.example/v2/hub-proxy"]
          override_path = true
        [host."https://plain.example/prefix"]
        [host."https://already.example/api/v2/"]
        """
    node = make_node(tmp_path, dirs={"docker.io": {"hosts.toml": content}})
    r = explain(node, "nginx:1")
    assert [e["request"] for e in r["endpoints"]][:3] == [
        "https://harbor.example/v2/hub-proxy/library/nginx/manifests/1?ns=docker.io",
        "https://plain.example/prefix/v2/library/nginx/manifests/1?ns=docker.io",
        "https://already.example/api/v2/library/nginx/manifests/1?ns=docker.io",
    ]


def test_tls_files_and_credentials_per_endpoint(tmp_path):
    config = V2 + (
        '  [plugins."io.containerd.grpc.v1.cri".registry.configs."m.example:8443".auth]\n'
        '    username = "robot"\n    password = "hunter2-not-shown"\n'
    )
    content = """\
        ca = "upstream-ca.pem"
        [host."https://m.example:8443"]
          ca = ["/etc/pki/m.pem"]
          client = [["client.cert", "client.key"]]
          [host."https://m.example:8443".header]
            Authorization = "Bearer not-shown-either"
        """
    node = make_node(tmp_path, config, dirs={"reg.example": {"hosts.toml": content, "upstream-ca.pem": "-----BEGIN CERTIFICATE-----\n"}})  # fmt: skip
    r = explain(node, "reg.example/app:1", name="tls-and-credentials")
    mirror, upstream = r["endpoints"]
    assert mirror["credentials"] == 'config.toml configs."m.example:8443".auth (username+password)'
    assert upstream["credentials"].startswith('none in config.toml (no configs."reg.example".auth)')
    assert mirror["headers"] == ["Authorization"]
    assert "+ CA /etc/pki/m.pem (MISSING: no such file)" in mirror["tls"]
    assert any("client.cert" in t and "MISSING" in t for t in mirror["tls"])
    assert upstream["tls"][1] == "+ CA /etc/containerd/certs.d/reg.example/upstream-ca.pem"  # relative to the dir
    assert "every pull from reg.example fails first" in r["outcome"]
    text = json.dumps(r) + (GOLDEN / "tls-and-credentials.txt").read_text()
    assert "hunter2" not in text and "not-shown-either" not in text


def test_first_root_with_any_candidate_wins(tmp_path):
    config = V2.replace('"/etc/containerd/certs.d"', '"/etc/containerd/certs.d:/etc/docker/certs.d"')
    node = make_node(tmp_path, config, dirs={"_default": {"hosts.toml": '[host."https://first.example"]\n'}})
    second = node / "etc/docker/certs.d/docker.io"
    second.mkdir(parents=True)
    (second / "hosts.toml").write_text('[host."https://second.example"]\n')
    r = explain(node, "nginx")
    assert urls(r)[0] == "https://first.example/v2"
    assert any("/etc/docker/certs.d/docker.io exists but is not used" in w for w in r["warnings"])


def test_no_config_path_and_legacy_mirrors(tmp_path):
    config = (
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n'
        '  endpoint = ["https://legacy.example", "https://registry-1.docker.io"]\n'
    )
    node = make_node(tmp_path, config, dirs={"docker.io": {"hosts.toml": '[host."https://unused.example"]\n'}})
    r = explain(node, "nginx", name="legacy-mirrors")
    assert urls(r) == ["https://legacy.example/v2", "https://registry-1.docker.io/v2"]
    assert "legacy config.toml registry.mirrors" in r["source"]
    assert r["candidates"] == []
    # Debian's config.toml: no config_path, no mirrors: straight to the registry.
    r = explain(make_node(tmp_path / "b", "version = 2\n"), "nginx")
    assert urls(r) == ["https://registry-1.docker.io/v2"]
    assert "CRI consults no hosts directory" in r["config"]


def test_containerd_2_2_defaults_config_path(tmp_path):
    node = make_node(tmp_path, "version = 3\n", dirs={"docker.io": {"hosts.toml": '[host."https://m.example"]\n'}})
    r = explain(node, "nginx", version="2.2.0")
    assert urls(r)[0] == "https://m.example/v2"
    assert "defaults to /etc/containerd/certs.d:/etc/docker/certs.d" in r["config"]


def test_mirrors_next_to_config_path_is_flagged(tmp_path):
    config = V2 + '  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n    endpoint = ["https://x"]\n'
    r = explain(make_node(tmp_path, config), "nginx")
    assert any("refuses to load" in w for w in r["warnings"])


def test_directory_without_hosts_toml_uses_docker_cert_files(tmp_path):
    node = make_node(tmp_path, dirs={"reg.example": {"ca.crt": "-----BEGIN CERTIFICATE-----\n"}})
    r = explain(node, "reg.example/app:1")
    assert "has no hosts.toml" in r["source"]
    assert r["endpoints"][0]["tls"][1] == "+ CA /etc/containerd/certs.d/reg.example/ca.crt"


def test_plain_http_with_tls_options_tries_https_first_on_newer_releases(tmp_path):
    content = '[host."http://m.example:5000"]\nskip_verify = true\n'
    node = make_node(tmp_path, dirs={"reg.example": {"hosts.toml": content}})
    assert not any("tries HTTPS first" in w for w in explain(node, "reg.example/a:1", version="1.6.20")["warnings"])
    assert any("tries HTTPS first" in w for w in explain(node, "reg.example/a:1", version="1.7.20")["warnings"])


def test_no_config_toml_at_all(tmp_path):
    r = explain(make_node(tmp_path, None), "nginx")
    assert urls(r) == ["https://registry-1.docker.io/v2"]
    assert "does not exist" in r["config"]


def test_legacy_configs_tls_is_used_only_without_config_path(tmp_path):
    tls = '[plugins."io.containerd.grpc.v1.cri".registry.configs."reg.example".tls]\n  insecure_skip_verify = true\n'
    legacy = explain(make_node(tmp_path / "a", "version = 2\n" + tls), "reg.example/app:1")
    assert any("legacy, used because config_path is unset" in t for t in legacy["endpoints"][0]["tls"])
    ignored = explain(make_node(tmp_path / "b", V2 + tls), "reg.example/app:1")
    assert any("is not used next to config_path" in t for t in ignored["endpoints"][0]["tls"])
    assert any("refuses to load the CRI plugin" in w for w in ignored["warnings"])


@pytest.mark.parametrize(
    ("version", "host", "first"),
    [
        ("1.6.24", "m.example:5000", False),
        ("1.6.25", "m.example:5000", True),
        ("1.6.38", "m.example", False),  # 1.6: only an explicit port other than 80
        ("1.6.38", "m.example:80", False),
        ("1.7.6", "m.example:5000", False),  # 1.7.0-1.7.6 use the scheme as written
        ("1.7.7", "m.example", True),  # 1.7.7: every port, 80 too
        ("1.7.7", "m.example:80", True),
        ("1.7.8", "m.example", False),
        ("1.7.23", "[fd00::1]:5000", True),
        ("1.7.24", "m.example", True),  # 1.7.24 and 2.x: any port but 80, none included
        ("2.1.9", "m.example", True),
        ("2.1.9", "[fd00::1]:80", False),
        ("2.1.9", "[fd00::1]", True),
    ],
)
def test_which_releases_try_https_first_for_an_http_endpoint_with_tls_options(tmp_path, version, host, first):
    assert tries_https_first(ContainerdVersion.parse(version), host) is first
    content = f'[host."http://{host}"]\nskip_verify = true\n'
    r = explain(make_node(tmp_path, dirs={"reg.example": {"hosts.toml": content}}), "reg.example/a:1", version=version)
    assert any("tries HTTPS first" in w for w in r["warnings"]) is first
    (tls,) = [t for e in r["endpoints"] for t in e["tls"] if t.startswith("TLS options set too")]
    assert ("tries HTTPS first" in tls) is first


@pytest.mark.parametrize("written", ["skip_verify = false", "ca = []"])
def test_tls_keys_written_empty_or_false_still_count_as_tls_configured(tmp_path, written):
    """containerd counts a written ca/client/skip_verify (its explicitTLS), whatever the value."""
    content = f'[host."http://m.example:5000"]\n{written}\n'
    r = explain(make_node(tmp_path, dirs={"reg.example": {"hosts.toml": content}}), "reg.example/a:1", version="1.7.20")
    assert any("tries HTTPS first" in w for w in r["warnings"])


def test_a_user_and_password_in_a_host_url_are_not_part_of_the_host(tmp_path):
    """As Go's URL.Host: the credentials key and the port are the host's, and the password is never shown."""
    content = '[host."http://u:hunter2@m.example:5000"]\nskip_verify = true\n'
    r = explain(make_node(tmp_path, dirs={"reg.example": {"hosts.toml": content}}), "reg.example/a:1", version="1.7.20")
    assert urls(r)[0] == "http://m.example:5000/v2"
    assert "hunter2" not in json.dumps(r)
    assert any("tries HTTPS first" in w for w in r["warnings"])  # the port is seen: 5000


@pytest.mark.parametrize(
    ("version", "registry", "url", "tls"),
    [
        ("1.6.8", "localhost:5000", "https://localhost:5000/v2", "verified"),
        ("1.6.20", "localhost:5000", "http://localhost:5000/v2", "plain"),  # 1.6.9-1.6.24: plain HTTP
        ("1.6.20", "localhost", "http://localhost/v2", "plain"),
        ("1.7.7", "127.0.0.1:5000", "http://127.0.0.1:5000/v2", "https first"),  # 1.7.7: every port
        ("1.7.8", "localhost", "https://localhost/v2", "unverified"),  # 1.7.8+: the port decides
        ("1.7.24", "localhost:443", "https://localhost:443/v2", "unverified"),
        ("2.1.9", "127.0.0.2:5000", "http://127.0.0.2:5000/v2", "https first"),  # every 127.x is loopback
        ("2.1.9", "localhost:80", "http://localhost:80/v2", "plain"),
        ("2.1.9", "[::1]:5000", "http://[::1]:5000/v2", "https first"),
        ("2.1.9", "reg.example:5000", "https://reg.example:5000/v2", "verified"),
    ],
)
def test_a_localhost_registry_without_hosts_toml_is_reached_as_containerd_reaches_it(tmp_path, version, registry, url, tls):
    r = explain(make_node(tmp_path), f"{registry}/app:1", version=version)
    assert urls(r) == [url]
    (endpoint,) = r["endpoints"]
    shown = " | ".join(endpoint["tls"])
    seen = {
        "verified": "verified against the system roots" in shown,
        "unverified": "NOT verified" in shown,
        "https first": "tries HTTPS first" in shown,
        "plain": shown.startswith("plain HTTP") and "tries HTTPS first" not in shown,
    }
    assert [k for k, v in seen.items() if v] == [tls], shown


@pytest.mark.parametrize(
    ("host", "split"),
    [
        ("m.example", ("m.example", "")),
        ("m.example:5000", ("m.example", "5000")),
        ("[fd00::1]:5000", ("[fd00::1]", "5000")),
        ("[fd00::1]", ("[fd00::1]", "")),
        ("fd00::1", ("fd00::1", "")),  # unbracketed IPv6: all host, as Go's SplitHostPort fails on it
        ("[fd00::1", ("[fd00::1", "")),
    ],
)
def test_host_and_port_are_split_as_go_splits_them(host, split):
    """One splitter for what containerd contacts: the HTTPS-first rule, localhost and doctor's probes use it."""
    assert names.split_host_port(host) == split
