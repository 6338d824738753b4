"""`nodecfg doctor`: one test per finding, the exit code, and real probes against local servers.

The node trees are built by hand (as a real node may be); goldens of the text output live in
tests/golden/doctor/ (UPDATE_GOLDEN=1 to regenerate, then review).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run, status_server
from tests.test_explain import STUB, V2, make_node

GOLDEN = Path(__file__).parent / "golden" / "doctor"
OFFLINE = ("--no-cri", "--no-network")


def doctor(node: Path, *extra: str, version: str = "1.6.20", golden: str | None = None) -> tuple[int, dict[str, Any]]:
    args = ["doctor", "--root", str(node), "--containerd-version", version, *extra]
    rc, out, err = run(*args, "-o", "json")
    assert rc in (0, 1), err
    result: dict[str, Any] = json.loads(out)
    assert result["ok"] == (rc == 0)
    if golden is not None:
        rc_text, text, _ = run(*args)
        assert rc_text == rc
        path = GOLDEN / f"{golden}.txt"
        if os.environ.get("UPDATE_GOLDEN") == "1":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text.replace(str(node), "<root>"))
        assert text.replace(str(node), "<root>") == path.read_text()
    return rc, result


def by_id(result: dict[str, Any], check_id: str) -> list[dict[str, Any]]:
    return [c for c in result["checks"] if c["id"] == check_id]


def test_healthy_node_passes(tmp_path):
    node = make_node(tmp_path, dirs={"docker.io": {"hosts.toml": '[host."https://m.example"]\n'}})
    rc, r = doctor(node, *OFFLINE, golden="healthy")
    assert rc == 0
    assert by_id(r, "hosts.ok") and by_id(r, "config.config_path")[0]["status"] == "ok"


def test_debian_default_config_has_no_config_path(tmp_path):
    rc, r = doctor(make_node(tmp_path, "version = 2\n"), *OFFLINE, golden="no-config-path")
    assert rc == 1
    (c,) = by_id(r, "config.config_path")
    assert c["status"] == "fail" and "config_path = '/etc/containerd/certs.d'" in c["fix"]


def test_config_path_elsewhere(tmp_path):
    config = V2.replace("/etc/containerd/certs.d", "/opt/certs")
    rc, r = doctor(make_node(tmp_path, config), *OFFLINE)
    assert rc == 1 and "does not include /etc/containerd/certs.d" in by_id(r, "config.config_path")[0]["title"]


def test_legacy_mirrors_next_to_config_path(tmp_path):
    config = V2 + '  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n    endpoint = ["https://x"]\n'
    rc, r = doctor(make_node(tmp_path, config), *OFFLINE, golden="mirrors-conflict")
    assert rc == 1 and "`mirrors` cannot be set" in by_id(r, "config.invalid")[0]["detail"]


@pytest.mark.parametrize(
    ("content", "version", "detail"),
    [
        ('server = "http://reg.example"\n', "1.6.20", "no [host] table"),
        ('[host."https://m"\n', "1.6.20", "not valid TOML"),
        ('[host."https://m"]\ncapabilities = ["pull", "mirror"]\n', "1.6.20", "unknown capability 'mirror'"),
        ('[host."https://m"]\ncapabilities = ["pull", "referrers"]\n', "2.1.0", "unknown capability 'referrers'"),
        ('[host."https://m"]\ndial_timeout = "soon"\n', "2.1.0", "invalid dial_timeout"),
    ],
)
def test_files_containerd_refuses(tmp_path, content, version, detail):
    node = make_node(tmp_path, dirs={"reg.example": {"hosts.toml": content}})
    rc, r = doctor(node, *OFFLINE, version=version)
    assert rc == 1
    (c,) = by_id(r, "hosts.refused")
    assert detail in c["detail"] and c["status"] == "fail", c


def test_root_only_file_is_fine_on_2_0(tmp_path):
    node = make_node(tmp_path, dirs={"reg.example": {"hosts.toml": 'server = "http://reg.example"\n'}})
    assert doctor(node, *OFFLINE, version="2.0.0")[0] == 0


def test_root_only_golden(tmp_path):
    node = make_node(tmp_path, dirs={"reg.example": {"hosts.toml": 'server = "http://reg.example"\n'}})
    doctor(node, *OFFLINE, golden="root-only")


def test_missing_ca_and_key_files(tmp_path):
    content = '[host."https://m.example"]\nca = "ca.pem"\nclient = [["/etc/pki/c.cert", "/etc/pki/c.key"]]\n'
    node = make_node(tmp_path, dirs={"reg.example": {"hosts.toml": content, "ca.pem": "not a certificate\n"}})
    assert doctor(node, *OFFLINE, golden="missing-files")[0] == 1
    _, r = doctor(node, *OFFLINE)
    (c,) = by_id(r, "hosts.files")
    assert "ca.pem: holds no PEM certificate" in c["detail"] and "/etc/pki/c.key: no such file" in c["detail"]


def test_http_host_with_tls_options(tmp_path):
    content = '[host."http://m.example:5000"]\nskip_verify = true\n' + STUB
    node = make_node(tmp_path, dirs={"reg.example": {"hosts.toml": content}})
    rc, r = doctor(node, *OFFLINE, version="1.7.20")
    assert rc == 0
    (c,) = by_id(r, "hosts.http_tls")
    assert c["status"] == "warn" and "tries HTTPS first" in c["detail"]


def test_directories_never_looked_up_and_shadowed(tmp_path):
    node = make_node(
        tmp_path,
        dirs={
            "registry-1.docker.io": {"hosts.toml": STUB},
            "https:": {"hosts.toml": STUB},
            "r.example:5000": {"hosts.toml": STUB},
            "r.example_5000_": {"hosts.toml": STUB},
            "_default": {"hosts.toml": STUB},
        },
    )
    rc, r = doctor(node, *OFFLINE, version="1.6.16", golden="dirs")
    assert rc == 1
    assert {c["title"].split("/")[-1] for c in by_id(r, "hosts.unused_dir")} == {
        "registry-1.docker.io: never looked up",
        "https:: never looked up",
    }
    assert "r.example_5000_ in the same directory" in by_id(r, "hosts.shadowed")[0]["detail"]
    assert by_id(r, "hosts.default_unsupported")[0]["status"] == "fail"


def test_permissions(tmp_path):
    config = V2 + '  [plugins."io.containerd.grpc.v1.cri".registry.configs."r.example".auth]\n    username = "u"\n    password = "do-not-print-me"\n'  # fmt: skip
    content = '[host."https://m.example"]\nclient = ["/etc/pki/both.pem"]\n'
    node = make_node(tmp_path, config, dirs={"r.example": {"hosts.toml": content}})
    (node / "etc/pki").mkdir(parents=True)
    (node / "etc/pki/both.pem").write_text("-----BEGIN CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\n")
    os.chmod(node / "etc/containerd/config.toml", 0o644)
    os.chmod(node / "etc/pki/both.pem", 0o644)
    os.chmod(node / "etc/containerd/certs.d/r.example", 0o777)  # noqa: S103 (the finding under test)
    rc, r = doctor(node, *OFFLINE)
    assert rc == 1
    assert {c["id"] for c in r["checks"] if c["status"] == "fail"} == {"perm.config", "perm.hosts_dir", "perm.key"}
    assert "do-not-print-me" not in json.dumps(r)
    os.chmod(node / "etc/containerd/config.toml", 0o600)
    os.chmod(node / "etc/pki/both.pem", 0o600)
    os.chmod(node / "etc/containerd/certs.d/r.example", 0o755)  # noqa: S103
    assert doctor(node, *OFFLINE)[0] == 0


def test_hosts_toml_with_a_bearer_token_readable_by_others(tmp_path):
    with_token = '[host."https://m.example"]\n  [host."https://m.example".header]\n  Authorization = "Bearer do-not-print-me"\n'
    cookie_on_server = 'server = "https://c.example"\n[header]\nCookie = "session=do-not-print-me"\n[host]\n'
    owned = "# Managed by nodecfg: do not edit.\n" + with_token
    node = make_node(
        tmp_path,
        dirs={
            "r.example": {"hosts.toml": with_token},
            "c.example": {"hosts.toml": cookie_on_server},
            "o.example": {"hosts.toml": owned},
            "p.example": {"hosts.toml": STUB},
        },
    )
    for d in ("r.example", "c.example", "o.example", "p.example"):
        os.chmod(node / "etc/containerd/certs.d" / d / "hosts.toml", 0o644)
    rc, r = doctor(node, *OFFLINE)
    assert rc == 1
    certs = "/etc/containerd/certs.d"
    assert [(c["title"], c["fix"]) for c in by_id(r, "perm.hosts_secret")] == [
        (f"{certs}/c.example/hosts.toml: credentials (Cookie header) readable by other users (mode 0644)", f"chmod 600 {certs}/c.example/hosts.toml"),
        (f"{certs}/o.example/hosts.toml: credentials (Authorization header) readable by other users (mode 0644)", f"chmod 600 {certs}/o.example/hosts.toml (or `nodecfg apply`: it writes a hosts.toml with credentials 0600)"),
        (f"{certs}/r.example/hosts.toml: credentials (Authorization header) readable by other users (mode 0644)", f"chmod 600 {certs}/r.example/hosts.toml"),
    ]  # fmt: skip
    assert not by_id(r, "perm.ok"), "credentials are open to other users: doctor must not say otherwise"
    assert "do-not-print-me" not in json.dumps(r)
    for d in ("r.example", "c.example", "o.example"):
        os.chmod(node / "etc/containerd/certs.d" / d / "hosts.toml", 0o600)
    rc, r = doctor(node, *OFFLINE)
    assert rc == 0 and by_id(r, "perm.ok") and not by_id(r, "perm.hosts_secret")


@pytest.fixture
def registry_api() -> Iterator[str]:
    """A local HTTP server answering like a registry that wants credentials (401 on /v2/)."""
    with status_server(lambda path: 401 if path == "/v2/" else 404) as address:
        yield address


def test_network_probes_reach_real_servers(tmp_path, registry_api):
    # A name pinned in the node's /etc/hosts resolves the way containerd would resolve it.
    port = registry_api.split(":")[1]
    content = f'[host."http://mirror.node-only.test:{port}"]\n[host."http://{registry_api}/wrong/path"]\n  override_path = true\n'  # fmt: skip
    node = make_node(tmp_path, dirs={"reg.example": {"hosts.toml": content}})
    (node / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.0.1 mirror.node-only.test  # pinned\n")
    rc, r = doctor(node, "--no-cri", "--probe-timeout", "1")
    ok = [c["title"] for c in by_id(r, "net.ok")]
    assert any(f"mirror.node-only.test:{port}" in t and "answers 401" in t and "node /etc/hosts" in t for t in ok), r
    (api,) = by_id(r, "net.api")
    assert "answered 404" in api["title"]
    # The upstream reg.example does not resolve here: only the fallback after the mirrors.
    (dns,) = by_id(r, "net.dns")
    assert dns["status"] == "warn" and "only the fallback" in dns["title"]
    assert rc == 0


def test_unreachable_registry_without_mirrors_fails(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))  # bound, never listening: connection refused
    try:
        content = f'server = "http://127.0.0.1:{s.getsockname()[1]}"\n' + STUB
        node = make_node(tmp_path, dirs={"reg.example": {"hosts.toml": content}})
        rc, r = doctor(node, "--no-cri", "--probe-timeout", "1")
    finally:
        s.close()
    assert rc == 1
    (c,) = by_id(r, "net.connect")
    assert c["status"] == "fail" and "ConnectionRefusedError" in c["detail"]


def test_a_registry_that_takes_the_connection_and_never_answers_is_its_own_failure(tmp_path, silent_server):
    content = f'server = "http://{silent_server}"\n' + STUB
    node = make_node(tmp_path, dirs={"reg.example": {"hosts.toml": content}})
    rc, r = doctor(node, "--no-cri", "--probe-timeout", "0.3")
    assert rc == 1 and not by_id(r, "net.connect")
    (c,) = by_id(r, "net.no_answer")
    assert c["status"] == "fail" and "connected to 127.0.0.1 (literal address) but no answer to GET /v2/" in c["title"]
    assert (
        c["detail"].startswith("no response headers within 0.3s;")
        and "containerd 2.3+ waits 30 s for each request" in c["detail"]
    )
    _rc, text, _err = run("doctor", "--root", str(node), "--containerd-version", "1.6.20", "--no-cri", "--probe-timeout", "0.3")
    assert "but no answer to GET /v2/" in text and "no response headers within 0.3s" in text


def test_containerd_not_running_is_a_failure(tmp_path):
    rc, r = doctor(make_node(tmp_path), "--no-network", "--containerd-socket", "/run/nope.sock")
    assert rc == 1 and by_id(r, "containerd.cri")[0]["status"] == "fail"


def test_bad_probe_timeout_is_exit_2(tmp_path):
    rc, _, err = run("doctor", "--root", str(make_node(tmp_path)), "--probe-timeout", "0")
    assert rc == 2 and "--probe-timeout" in err


def test_root_level_files_count_also_in_default(tmp_path):
    # Root fields without `server` apply to the implicit upstream, whatever registry that is:
    # a missing root CA in _default fails every pull that goes through _default.
    content = 'ca = "missing-root-ca.pem"\nclient = "missing-pair.pem"\n[host."https://m.example"]\n'
    node = make_node(tmp_path, dirs={"_default": {"hosts.toml": content}})
    (node / "etc/containerd/certs.d/_default/missing-pair.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    os.chmod(node / "etc/containerd/certs.d/_default/missing-pair.pem", 0o644)
    rc, r = doctor(node, *OFFLINE)
    assert rc == 1
    (c,) = by_id(r, "hosts.files")
    assert "missing-root-ca.pem: no such file" in c["detail"]
    assert "missing-pair.pem: holds no PEM certificate" in c["detail"]
    assert by_id(r, "perm.key"), "the root client pair is a key file too"
    explained = json.loads(
        run("explain", "ghcr.io/a/b:1", "--root", str(node), "--containerd-version", "1.6.20", "-o", "json")[1]
    )
    assert "every pull from ghcr.io fails first" in explained["outcome"]


def test_a_host_port_directory_without_hosts_toml_is_probed_as_its_registry(tmp_path, registry_api):
    port = registry_api.split(":")[1]
    node = make_node(tmp_path, dirs={f"reg.node-only.test_{port}_": {"ca.crt": "x\n"}})
    (node / "etc/hosts").write_text("127.0.0.1 reg.node-only.test\n")
    _, r = doctor(node, "--no-cri", "--probe-timeout", "1")
    # No hosts.toml: containerd uses https://<namespace>, and the test server speaks plain HTTP.
    (c,) = [c for c in r["checks"] if c["id"].startswith("net.") and f"reg.node-only.test:{port}" in c["title"]]
    assert c["title"].startswith(f"https://reg.node-only.test:{port}/v2") and c["status"] == "fail", c


def test_http_hosts_with_tls_options_are_judged_by_release_and_port(tmp_path):
    """1.7.20 keeps `http://m.example` (no port) as HTTP but tries HTTPS first on :5000; 1.7.24 does both."""
    content = '[host."http://m.example"]\nskip_verify = true\n[host."http://n.example:5000"]\nskip_verify = true\n' + STUB
    node = make_node(tmp_path, dirs={"reg.example": {"hosts.toml": content}})
    (some,) = by_id(doctor(node, *OFFLINE, version="1.7.20")[1], "hosts.http_tls")
    assert "tries HTTPS first for http://n.example:5000/v2 " in some["detail"] and "m.example/" not in some["detail"]
    (both,) = by_id(doctor(node, *OFFLINE, version="1.7.24")[1], "hosts.http_tls")
    assert both["detail"].startswith("containerd 1.7.24 tries HTTPS first and")
    (none,) = by_id(doctor(node, *OFFLINE, version="1.7.6")[1], "hosts.http_tls")
    assert none["detail"].startswith("containerd 1.7.6 keeps them on plain HTTP here")
