"""hosts.toml rendering, checked against docs/containerd.md (## hosts.toml) and re-parsed with tomllib."""

from __future__ import annotations

import tomllib

import pytest

from nodecfg.containerd.errors import ConfigError
from nodecfg.containerd.legacy import Legacy
from nodecfg.containerd.versions import ContainerdTarget, ContainerdVersion, VersionSource
from nodecfg.render import Layout, render
from nodecfg.render.files import FileKind
from nodecfg.render.hosts import check_hosts_toml, kind_of_file_name
from nodecfg.render.materials import Materials
from nodecfg.spec.loader import load_config

HEAD = "# Managed by nodecfg: do not edit, changes are overwritten.\n"
CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"


def hosts(yaml_text: str, version: str = "1.6.20", files: dict[str, bytes] | None = None):
    config = load_config(yaml_text)
    target = ContainerdTarget(ContainerdVersion.parse(version), VersionSource.FLAG)
    r = render(
        config,
        Materials(files=files or {}),
        layout=Layout(),
        target=target,
        current_config="",
        state_legacy=Legacy(),
        owned_auth_hosts=frozenset(),
    )
    out = {f.path.removeprefix("/etc/containerd/certs.d/"): f for f in r.files if f.kind is not FileKind.CONTAINERD_CONFIG}
    for name, f in out.items():
        if name.endswith("hosts.toml"):
            tomllib.loads(f.content.decode())  # containerd must be able to parse it
            assert not check_hosts_toml(f.content.decode(), target.version)
    return out, r.warnings


def text(files, name):
    return files[name].content.decode()


def test_mirror_with_fallback_keeps_order_and_upstream_last():
    files, _ = hosts(
        "version: 1\nregistries:\n  docker.io:\n    mirrors: [https://a.example, 'http://b.example:5000', c.example/v2/proj]\n"
    )
    assert text(files, "docker.io/hosts.toml") == HEAD + (
        "# Registry: docker.io\n\n"
        'server = "https://registry-1.docker.io"\n\n'
        '[host."https://a.example"]\ncapabilities = ["pull", "resolve"]\n\n'
        '[host."http://b.example:5000"]\ncapabilities = ["pull", "resolve"]\n\n'
        '[host."https://c.example/v2/proj"]\ncapabilities = ["pull", "resolve"]\n'
    )
    parsed = tomllib.loads(text(files, "docker.io/hosts.toml"))
    assert list(parsed["host"]) == ["https://a.example", "http://b.example:5000", "https://c.example/v2/proj"]


def test_fallback_false_makes_last_mirror_the_server():
    files, _ = hosts(
        "version: 1\nregistries:\n  docker.io:\n    fallback: false\n    mirrors: [https://a.example, {url: 'https://h.example/v2/hub', overridePath: true}]\n"
    )
    parsed = tomllib.loads(text(files, "docker.io/hosts.toml"))
    assert parsed["server"] == "https://h.example/v2/hub"
    assert parsed["override_path"] is True
    assert parsed["capabilities"] == ["pull", "resolve"]
    assert list(parsed["host"]) == ["https://a.example"]
    assert "registry-1.docker.io" not in text(files, "docker.io/hosts.toml")


def test_single_mirror_without_fallback_still_has_a_host_table():
    files, _ = hosts("version: 1\nregistries:\n  quay.io:\n    fallback: false\n    mirrors: [https://m.example]\n")
    assert text(files, "quay.io/hosts.toml").endswith(
        'server = "https://m.example"\ncapabilities = ["pull", "resolve"]\n\n[host]\n'
    )


def test_plain_http_registry_has_http_server_and_no_tls():
    files, _ = hosts("version: 1\nregistries:\n  10.0.0.5:5000:\n    plainHTTP: true\n")
    assert (
        text(files, "10.0.0.5:5000/hosts.toml")
        == HEAD + '# Registry: 10.0.0.5:5000\n\nserver = "http://10.0.0.5:5000"\n\n[host]\n'
    )


def test_wildcard_goes_to_default_without_server():
    files, _ = hosts("version: 1\nregistries:\n  '*':\n    mirrors: [https://m.example]\n")
    parsed = tomllib.loads(text(files, "_default/hosts.toml"))
    assert "server" not in parsed
    assert list(parsed["host"]) == ["https://m.example"]


def test_ca_and_client_cert_files_beside_hosts_toml_with_host_paths():
    y = "version: 1\nregistries:\n  harbor.example:\n    caFile: /s/ca.crt\n    clientCertFile: /s/tls.crt\n    clientKeyFile: /s/tls.key\n    skipVerify: false\n    headers: {X-Team: payments}\n"
    files, _ = hosts(y, files={"/s/ca.crt": CA, "/s/tls.crt": CA, "/s/tls.key": KEY})
    d = "/etc/containerd/certs.d/harbor.example"
    parsed = tomllib.loads(text(files, "harbor.example/hosts.toml"))
    assert parsed["ca"] == f"{d}/ca.pem"
    assert parsed["client"] == [[f"{d}/client.cert", f"{d}/client.key"]]
    assert parsed["header"] == {"X-Team": ["payments"]}
    assert files["harbor.example/ca.pem"].content == CA
    assert files["harbor.example/client.key"].mode == 0o600
    assert files["harbor.example/client.key"].kind is FileKind.CLIENT_KEY


def test_hosts_toml_with_a_credential_header_is_private():
    y = (
        "version: 1\nregistries:\n"
        "  plain.example:\n    headers: {X-Team: payments}\n"
        "  token.example:\n    headers: {Authorization: 'Bearer t0ken'}\n"
        "  docker.io:\n    mirrors:\n      - url: https://m.example\n        headers: {X-Registry-Token: t0ken}\n"
    )
    files, _ = hosts(y)
    modes = {name: f.mode for name, f in files.items()}
    # A mirror's header makes its registry's file private too: it is the file containerd reads.
    assert modes == {"plain.example/hosts.toml": 0o644, "token.example/hosts.toml": 0o600, "docker.io/hosts.toml": 0o600}


def test_mirror_tls_uses_its_own_files():
    y = (
        "version: 1\nregistries:\n  docker.io:\n    mirrors:\n      - url: 'https://m.example:8443'\n        skipVerify: true\n"
        "        ca: |\n          -----BEGIN CERTIFICATE-----\n          x\n          -----END CERTIFICATE-----\n"
    )
    files, _ = hosts(y)
    parsed = tomllib.loads(text(files, "docker.io/hosts.toml"))
    m = parsed["host"]["https://m.example:8443"]
    assert m["ca"] == "/etc/containerd/certs.d/docker.io/mirror1-ca.pem"
    assert m["skip_verify"] is True
    assert "ca" not in parsed


def test_referrers_and_dial_timeout_follow_the_target_version():
    y = "version: 1\nregistries:\n  docker.io:\n    mirrors: [{url: m.example, capabilities: [pull, resolve, referrers], dialTimeout: 500ms}]\n"
    old, warnings = hosts(y, "1.6.20")
    m = tomllib.loads(text(old, "docker.io/hosts.toml"))["host"]["https://m.example"]
    assert m == {"capabilities": ["pull", "resolve"]}
    assert any("'referrers' dropped" in w for w in warnings)
    assert any("dialTimeout: not rendered" in w for w in warnings)
    mid, _ = hosts(y, "2.1.0")
    assert tomllib.loads(text(mid, "docker.io/hosts.toml"))["host"]["https://m.example"] == {
        "capabilities": ["pull", "resolve"],
        "dial_timeout": "500ms",
    }
    new, warnings = hosts(y, "2.2.0")
    m = tomllib.loads(text(new, "docker.io/hosts.toml"))["host"]["https://m.example"]
    assert m == {"capabilities": ["pull", "resolve", "referrers"], "dial_timeout": "500ms"}
    assert not warnings


def test_wildcard_shadowing_is_reported():
    _, warnings = hosts("version: 1\nregistries:\n  '*':\n    mirrors: [https://m.example]\n  ghcr.io:\n    skipVerify: true\n")
    assert any("registries.'ghcr.io': has its own entry, so the mirrors of '*' do not apply" in w for w in warnings)


def test_bad_referenced_files_are_errors_naming_the_field():
    y = "version: 1\nregistries:\n  r.example:\n    caFile: /s/ca\n    clientCertFile: /s/crt\n"
    with pytest.raises(ConfigError) as e:
        hosts(y, files={"/s/ca": b"not a cert", "/s/crt": CA})
    assert e.value.problems == [
        "registries.'r.example'.caFile: '/s/ca' holds no PEM certificate",
        "registries.'r.example'.clientCertFile: '/s/crt' holds no private key; set clientKeyFile",
    ]
    with pytest.raises(ConfigError) as e:
        hosts(y)
    assert "registries.'r.example'.caFile: cannot read '/s/ca': not found" in e.value.problems


def test_check_hosts_toml_flags_what_containerd_1_6_ignores():
    v = ContainerdVersion(1, 6, 20)
    assert check_hosts_toml('server = "https://r"\n', v) == [
        "no [host] table: containerd 1.6.20 refuses the file (invalid `host` tree; fixed in 1.7.32)"
    ]
    assert check_hosts_toml('server = "https://r"\n', ContainerdVersion(2, 0, 0)) == []
    assert check_hosts_toml('[host."https://m"]\ncapabilities = ["pull", "referrers"]\n', v) == [
        "host.'https://m': unknown capability 'referrers' (containerd 1.6.20 knows pull, resolve, push)"
    ]
    assert check_hosts_toml('[host."http://m"]\nskip_verify = true\n', ContainerdVersion(1, 6, 0)) == [
        "host.'http://m': TLS options on a plain-HTTP endpoint make containerd 1.6.25+, 1.7.7+ and 2.x try HTTPS first"
    ]


def test_kind_of_every_rendered_file_is_known_from_its_name():
    # Stale files are known only by path; their kind (and so delete order and diff redaction) must
    # follow from the names the renderer gives them.
    y = (
        "version: 1\nregistries:\n  r.example:\n    caFile: /s/ca\n    clientCertFile: /s/both\n"
        "    mirrors:\n      - {url: m.example, caFile: /s/ca, clientCertFile: /s/crt, clientKeyFile: /s/key}\n"
    )
    files, _ = hosts(y, files={"/s/ca": CA, "/s/both": CA + KEY, "/s/crt": CA, "/s/key": KEY})
    kinds = {name.rsplit("/", 1)[-1]: f.kind for name, f in files.items()}
    assert set(kinds.values()) == {FileKind.HOSTS, FileKind.CA, FileKind.CLIENT_CERT, FileKind.CLIENT_KEY}
    for name, kind in kinds.items():
        assert kind_of_file_name(name) is kind, name


def test_a_ca_that_carries_a_private_key_is_refused_never_published():
    """A CA file is written readable by everyone: one with a key in it (a mis-pasted bundle) is refused."""
    y = "version: 1\nregistries:\n  r.example:\n    caFile: /s/bundle.pem\n"
    with pytest.raises(ConfigError) as e:
        hosts(y, files={"/s/bundle.pem": CA + KEY})
    assert e.value.problems == [
        "registries.'r.example'.caFile: '/s/bundle.pem' holds a private key too; give the CA certificates only"
    ]
    inline = "version: 1\nregistries:\n  r.example:\n    ca: |\n" + "".join(
        f"      {ln}\n" for ln in (CA + KEY).decode().splitlines()
    )
    with pytest.raises(ConfigError) as e:
        hosts(inline)
    assert e.value.problems == ["registries.'r.example'.ca holds a private key too; give the CA certificates only"]


def test_a_client_certificate_file_that_carries_its_key_is_as_private_as_the_key():
    y = "version: 1\nregistries:\n  r.example:\n    clientCertFile: /s/both.pem\n    clientKeyFile: /s/tls.key\n"
    files, _ = hosts(y, files={"/s/both.pem": CA + KEY, "/s/tls.key": KEY})
    assert files["r.example/client.cert"].mode == 0o600
    files, _ = hosts(y, files={"/s/both.pem": CA, "/s/tls.key": KEY})
    assert files["r.example/client.cert"].mode == 0o644
