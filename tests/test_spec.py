"""The input model: valid files load, bad files fail with every problem, located, never a secret."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nodecfg.containerd import names
from nodecfg.spec.loader import SpecError, load_config
from tests.conftest import EXAMPLES, REPO


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as e:
        load_config(text, "r.yaml")
    return [str(p) for p in e.value.problems]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_loads(path):
    config = load_config(path.read_text(), path.name)
    assert config.version == 1
    assert config.registries


def test_all_problems_reported_at_once_with_line_and_value():
    text = """version: 1
registries:
  docker.io:
    mirrors:
      - url: ftp://mirror.example
    fallBack: false
  "bad/../x": {}
  10.0.0.5:5000:
    plainHTTP: true
    skipVerify: true
credentials:
  - registry: harbor.example
    username: robot
    password: hunter2-literal
"""
    assert problems(text) == [
        "5: registries.\"docker.io\".mirrors[0]: url scheme must be http or https, not 'ftp'",
        '6: registries."docker.io".fallBack: unknown field (check its spelling and case): <redacted>',
        "7: registries.\"bad/../x\": must not contain '/', '\\', '..' or NUL (it names a directory): 'bad/../x'",
        '8: registries."10.0.0.5:5000": TLS options (skipVerify, ca, caFile, clientCertFile) cannot be combined with '
        "plainHTTP: containerd 1.6.25+, 1.7.7+ and 2.x then try HTTPS first (containerd#11647)",
        "12: credentials[0]: password: a literal password is refused (this file is a ConfigMap anyone can read): "
        "put it in a Secret and use passwordFile, or write ${ENV_VAR}",
    ]


def test_literal_password_never_echoed():
    with pytest.raises(SpecError) as e:
        load_config("version: 1\ncredentials:\n  - {registry: r.example, username: u, password: 'S3cret-Value!'}\n")
    assert "S3cret-Value!" not in str(e.value)


def test_env_reference_password_accepted():
    c = load_config("version: 1\ncredentials:\n  - {registry: r.example, username: u, password: '${REG_PASSWORD}'}\n")
    assert c.credentials[0].password == "${REG_PASSWORD}"


@pytest.mark.parametrize(
    "key",
    ["*", "docker.io", "10.0.0.5:5000", "[fd00::1]:5000", "localhost:5000", "my-registry.example.com:443", "Reg.Example"],
)
def test_registry_keys_accepted(key):
    assert names.check_registry_key(key) == key


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("", "is empty"),
        ("..", "must not contain"),
        ("a/b", "must not contain"),
        ("a\\b", "must not contain"),
        ("a\x00b", "must not contain"),
        ("x" * 300, "is longer than"),
        ("[fd00::1]", "[address]:port"),
        ("fd00::1", "brackets"),
        ("host:0", "port must be"),
        ("host:99999", "port must be"),
        ("host:", "port must be"),
        ("-bad.example", "host name"),
        ("under_score.example", "host name"),
        ("registry-1.docker.io", "write 'docker.io'"),
        ("index.docker.io", "write 'docker.io'"),
        ("[not-ip]:5000", "not an IPv6"),
    ],
)
def test_registry_keys_refused(key, rule):
    with pytest.raises(names.NameError_, match=None) as e:
        names.check_registry_key(key)
    assert rule in str(e.value)


def test_duplicate_yaml_keys_refused():
    text = "version: 1\nregistries:\n  docker.io: {}\n  docker.io: {plainHTTP: true}\n"
    [p] = problems(text)
    assert "duplicate key 'docker.io' (first at line 3)" in p
    assert p.startswith("4: (yaml)")


def test_fallback_false_needs_a_mirror():
    [p] = problems("version: 1\nregistries:\n  r.example:\n    fallback: false\n")
    assert p == '3: registries."r.example": fallback: false needs at least one mirror to pull from'


def test_mirror_credentials_in_url_refused_without_echo():
    [p] = problems("version: 1\nregistries:\n  docker.io:\n    mirrors: ['https://u:pa55word@m.example']\n")
    assert "must not carry credentials" in p
    assert "pa55word" not in p


def test_tls_on_plain_http_mirror_refused():
    [p] = problems("version: 1\nregistries:\n  docker.io:\n    mirrors: [{url: 'http://m.example:5000', skipVerify: true}]\n")
    assert "cannot be set on a plain-HTTP mirror" in p


def test_mirror_that_is_the_registry_itself_refused():
    [p] = problems("version: 1\nregistries:\n  docker.io:\n    mirrors: ['https://registry-1.docker.io']\n")
    assert "is the registry itself" in p


@pytest.mark.parametrize(
    "text", ["", "[]", "version: 2", "version: 1\nregistries: [a]", "a: [", "version: 1\nregistries:\n  ? [a]\n  : {}\n"]
)
def test_malformed_documents_are_spec_errors(text):
    assert problems(text)


def test_bad_duration_and_capability():
    text = "version: 1\nregistries:\n  docker.io:\n    mirrors: [{url: m.example, dialTimeout: 5 minutes, capabilities: [pull, fetch]}]\n"
    ps = problems(text)
    assert any("capabilities[1]" in p and "'fetch'" in p for p in ps)
    assert any("dialTimeout" in p and "'5 minutes'" in p for p in ps)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "version: 1\ncredentials:\n  - {registry: r.example, username: u, passwordFile: /pw, Password: MARKER-1}\n",
            "3: credentials[0].Password: unknown field (check its spelling and case): <redacted>",
        ),
        (
            "version: 1\npasword: MARKER-1\n",
            "2: pasword: unknown field (check its spelling and case): <redacted>",
        ),
        (
            "version: 1\nregistries:\n  r.example:\n    mirrors: [{url: m.example, tokn: MARKER-1}]\n",
            '4: registries."r.example".mirrors[0].tokn: unknown field (check its spelling and case): <redacted>',
        ),
        (
            "version: 1\ncredentials:\n  - {registry: 'r.example:MARKER-1', username: u, passwordFile: /pw}\n",
            "3: credentials[0].registry: must be a host or host:port as containerd contacts it, such as "
            "harbor.example or 10.0.0.5:5000: <redacted>",
        ),
        (
            "version: 1\ncredentials:\n  - {registry: r.example, username: 123456, passwordFile: /pw}\n",
            "3: credentials[0].username: Input should be a valid string: <redacted>",
        ),
        (
            "version: 1\nregistries:\n  r.example:\n    headers: {X-Team: [a, 123456]}\n",
            '4: registries."r.example".headers."X-Team"[1]: Input should be a valid string: <redacted>',
        ),
    ],
)
def test_values_that_may_be_secret_are_never_echoed(text, expected):
    with pytest.raises(SpecError) as e:
        load_config(text, "r.yaml")
    assert [str(p) for p in e.value.problems] == [expected]
    assert "MARKER-1" not in e.value.render() and "MARKER-1" not in str(e.value)
    assert "123456" not in e.value.render()


def test_ordinary_values_are_still_echoed():
    assert problems("version: 1\nregistries:\n  r.example:\n    mirrors: [{url: m.example, capabilities: [fetch]}]\n") == [
        "4: registries.\"r.example\".mirrors[0].capabilities[0]: Input should be 'pull', 'resolve', 'push' or 'referrers': 'fetch'"
    ]


def test_secret_header_values_never_echoed():
    [p] = problems("version: 1\nregistries:\n  r.example:\n    headers: {Authorization: [987654321]}\n")
    assert p.startswith('4: registries."r.example".headers.Authorization[0]: ')
    assert "987654321" not in p and "<redacted>" in p


def billion_laughs(levels: int = 9) -> str:
    """The classic bomb: each anchor a list of nine aliases to the one before (9**levels values)."""
    lines = [
        "version: 1",
        "registries:",
        "  r.example:",
        "    headers:",
        "      X0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]",
    ]
    lines += [f"      X{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


BOMB_RULE = 'invalid YAML: aliases expand to more than 100000 values (nested anchors and aliases, a "billion laughs" document)'


def test_yaml_bomb_refused_at_the_alias_that_crosses_the_bound():
    # Six levels (9**6 values), so that a regression costs this process tens of MiB, not gigabytes.
    text = billion_laughs(6)
    # X5 (line 10) is the first level whose aliases add more than the bound: refused there.
    assert problems(text) == [f"10: (yaml): {BOMB_RULE}"]


def test_yaml_bomb_memory_stays_small():
    # In a child with a 1 GiB address-space limit: without the bound this is a MemoryError there,
    # not gigabytes here. The bound asserted is far above a normal load (a few MiB).
    code = (
        "import json, resource, sys, tracemalloc\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from nodecfg.spec.loader import SpecError, load_config\n"
        "tracemalloc.start()\n"
        "try:\n"
        "    load_config(sys.stdin.read(), 'bomb.yaml')\n"
        "except SpecError as e:\n"
        "    print(json.dumps([str(p) for p in e.problems]))\n"
        "print(tracemalloc.get_traced_memory()[1])\n"
    )
    text = billion_laughs()
    assert len(text.encode()) < 1024
    r = subprocess.run(
        [sys.executable, "-c", code], input=text, capture_output=True, text=True, cwd=REPO, check=False, timeout=120
    )
    assert r.returncode == 0, r.stderr[-2000:]
    found, peak = r.stdout.splitlines()
    assert json.loads(found) == [f"10: (yaml): {BOMB_RULE}"]
    assert int(peak) < 64 * 1024 * 1024


def test_alias_cycle_refused():
    assert problems("version: 1\nregistries: &a {r.example: *a}\n") == [
        "2: (yaml): invalid YAML: an alias refers to a node that contains it (a cycle)"
    ]


def test_a_few_aliases_keep_working():
    text = """version: 1
registries:
  docker.io:
    mirrors: &hub
      - url: https://mirror-a.example
        capabilities: &pull [pull]
      - url: https://mirror-b.example
  quay.io: {mirrors: *hub}
  ghcr.io:
    mirrors: [{url: https://mirror-c.example, capabilities: *pull}]
"""
    config = load_config(text)
    assert [m.url for m in config.registries["quay.io"].mirrors] == ["https://mirror-a.example", "https://mirror-b.example"]
    assert config.registries["ghcr.io"].mirrors[0].capabilities == ["pull"]


def test_json_fallback_nested_too_deeply_is_a_spec_error():
    assert problems("[" * 100_000) == ["(yaml): invalid YAML: nested too deeply"]


HEADER_VALUE_RULE = "header value contains control character {}: Go's net/http refuses every request with it: <redacted>"
HEADER_NAME_RULE = (
    "not a valid HTTP header name (an RFC 7230 token: letters, digits and !#$%&'*+-.^_`|~): "
    "Go's net/http refuses every request with it: <redacted>"
)


def test_headers_are_what_go_net_http_sends_and_values_are_never_echoed():
    text = (
        "version: 1\nregistries:\n  r.example:\n"
        '    headers: {X-Token: ["tab\\tok", "SECRET1\\u007f", "SECRET2\\u001b"], "Bad Name": SECRET3, "X-Nl\\n": SECRET4}\n'
        '    mirrors: [{url: m.example, headers: {Authorization: "Bearer SECRET5\\r\\nX-Injected: 1"}}]\n'
    )
    with pytest.raises(SpecError) as e:
        load_config(text, "r.yaml")
    assert [str(p) for p in e.value.problems] == [
        f'4: registries."r.example".headers."X-Token"[1]: {HEADER_VALUE_RULE.format("0x7f")}',
        f'4: registries."r.example".headers."X-Token"[2]: {HEADER_VALUE_RULE.format("0x1b")}',
        f'4: registries."r.example".headers."Bad Name": {HEADER_NAME_RULE}',
        f'4: registries."r.example".headers."X-Nl\\n": {HEADER_NAME_RULE}',
        f'5: registries."r.example".mirrors[0].headers.Authorization[0]: {HEADER_VALUE_RULE.format("0x0d")}',
    ]
    assert "SECRET" not in e.value.render()


def test_tab_and_non_ascii_header_values_accepted():
    # httpguts.ValidHeaderFieldValue allows horizontal tab and bytes >= 0x80 (obs-text).
    config = load_config('version: 1\nregistries:\n  r.example:\n    headers: {X-A: "v\\tx", X-B: [ü, ""]}\n')
    assert config.registries["r.example"].headers == {"X-A": ["v\tx"], "X-B": ["ü", ""]}
