"""A unique marker through every way a secret enters nodecfg; no output may show it.

Sources: a passwordFile, a .dockerconfigjson `auth`, an identity token, an `Authorization` header,
a secret already in the node's config.toml in each TOML spelling, and a misspelled credential
field. Outputs: stdout and stderr (with the JSON log) of diff, diff -o json, apply -o json,
validate, render, explain -o json, doctor -o json and uninstall --dry-run; and of a running daemon
its JSON log, /readyz, /healthz, /metrics, status.json and `nodecfg status`.

Each case also checks that the secret did reach the node (or the diff, hidden), so a source that
silently stopped feeding the marker fails instead of passing.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, REPO, run

VERSION = "1.6.20"
REGISTRY_TABLE = '[plugins."io.containerd.grpc.v1.cri".registry]'
CONFIGS = 'plugins."io.containerd.grpc.v1.cri".registry.configs'


def marker(name: str) -> str:
    return f"mk-{name}-5e1f9a"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass(frozen=True)
class Source:
    """One way a secret enters: input pieces, or a spelling in the node's config.toml."""

    name: str
    registries: str = ""  # YAML lines under `registries:`
    credentials: str = ""  # YAML lines under `credentials:`
    files: dict[str, str] = field(default_factory=dict)  # beside registries.yaml
    registry_lines: str = ""  # config.toml lines inside the registry table (dotted keys)
    tables: str = ""  # config.toml tables after the registry table
    forms: tuple[str, ...] = ()  # other spellings of the same secret (its base64 auth form)
    shown: str = ""  # what `diff` shows where the secret is
    lands_in: str = ""  # the node file (under the root) the secret must reach on apply

    @property
    def marker(self) -> str:
        return marker(self.name)

    def secrets(self) -> tuple[str, ...]:
        return (self.marker, *self.forms)


def _input_sources() -> list[Source]:
    pw, auth, token, header = (marker(n) for n in ("password-file", "dockerconfig-auth", "identity-token", "header"))
    return [
        Source(
            "password-file",
            credentials="  - {registry: reg.example, username: robot, passwordFile: password}\n",
            files={"password": pw + "\n"},
            forms=(b64(f"robot:{pw}"),),
            shown='password = "<redacted>"',
            lands_in="etc/containerd/config.toml",
        ),
        Source(
            "dockerconfig-auth",
            credentials="  - {dockerConfigJSON: pull.json}\n",
            files={"pull.json": json.dumps({"auths": {"pull.example": {"auth": b64(f"puller:{auth}")}}})},
            forms=(b64(f"puller:{auth}"),),
            shown='password = "<redacted>"',
            lands_in="etc/containerd/config.toml",
        ),
        Source(
            "identity-token",
            credentials="  - {dockerConfigJSON: token.json}\n",
            files={"token.json": json.dumps({"auths": {"token.example": {"identitytoken": token}}})},
            shown='identitytoken = "<redacted>"',
            lands_in="etc/containerd/config.toml",
        ),
        Source(
            "header",
            registries=f"  hdr.example:\n    headers: {{Authorization: 'Bearer {header}', X-Team: payments}}\n",
            shown='Authorization = ["<redacted>"]',
            lands_in="etc/containerd/certs.d/hdr.example/hosts.toml",
        ),
    ]


def _spelling(name: str, *, registry_lines: str = "", tables: str = "", shown: str) -> Source:
    m = marker(name)
    return Source(
        name,
        registry_lines=registry_lines.replace("MARK", m),
        tables=tables.replace("MARK", m),
        shown=shown,
    )


def _config_spellings() -> list[Source]:
    auth = f'[{CONFIGS}."node.example".auth]\n'
    return [
        _spelling("table-basic", tables=auth + '  password = "MARK"\n  username = "u"\n', shown='password = "<redacted>"'),
        _spelling("table-literal", tables=auth + "  password = 'MARK'\n", shown='password = "<redacted>"'),
        # An escape: the file holds `\u0021`, the secret ends in `!`.
        _spelling("table-escaped", tables=auth + '  password = "MARK\\u0021"\n', shown='password = "<redacted>"'),
        _spelling("multiline-basic", tables=auth + '  password = """MARK\nMARK-line2"""\n', shown='password = "<redacted>"'),
        _spelling(  # a dotted key too, so that all three of its lines are in the diff's context
            "multiline-literal",
            registry_lines="  configs.\"node.example\".auth.password = '''\nMARK\nMARK-line3'''\n",
            shown='configs."multiline-literal.example".auth.password = "<redacted>"',
        ),
        _spelling("auth-field", tables=auth + '  auth = "MARK"\n', shown='auth = "<redacted>"'),
        _spelling("identitytoken", tables=auth + '  identitytoken = "MARK"\n', shown='identitytoken = "<redacted>"'),
        _spelling("registrytoken", tables=auth + '  registrytoken = "MARK"\n', shown='registrytoken = "<redacted>"'),
        _spelling("misspelled-in-auth", tables=auth + '  pasword = "MARK"\n', shown='pasword = "<redacted>"'),
        _spelling(
            "dotted-in-registry",
            registry_lines='  configs."node.example".auth.password = "MARK"\n',
            shown='configs."dotted-in-registry.example".auth.password = "<redacted>"',
        ),
        _spelling(
            "dotted-in-host",
            tables=f'[{CONFIGS}."node.example"]\n  auth.password = "MARK"\n',
            shown='auth.password = "<redacted>"',
        ),
        _spelling(
            "inline-table",
            tables=f'[{CONFIGS}."node.example"]\n  auth = {{ username = "u", password = "MARK" }}\n',
            shown='auth = { username = "u", password = "<redacted>" }',
        ),
        _spelling(
            "legacy-auths",
            tables='[plugins."io.containerd.grpc.v1.cri".registry.auths."https://node.example"]\n  auth = "MARK"\n',
            shown='auth = "<redacted>"',
        ),
        _spelling(
            "legacy-headers",
            tables='[plugins."io.containerd.grpc.v1.cri".registry.headers]\n  Authorization = ["Bearer MARK"]\n',
            shown='Authorization = ["<redacted>"]',
        ),
    ]


MISSPELLED = Source(
    "misspelled-field", credentials=f"  - {{registry: bad.example, username: u, Password: {marker('misspelled-field')}}}\n"
)
INPUT_SOURCES = _input_sources()
SPELLINGS = _config_spellings()


def registries_yaml(sources: list[Source]) -> str:
    text = "version: 1\nregistries:\n  docker.io:\n    mirrors: [{url: 'https://mirror.example'}]\n"
    text += "".join(s.registries for s in sources)
    credentials = "".join(s.credentials for s in sources)
    return text + (f"credentials:\n{credentials}" if credentials else "")


def node_config(sources: list[Source]) -> str | None:
    """The node's config.toml, each source's secret under a host of its own, right after the
    config_path line nodecfg changes (so the diff's context shows it); None: Debian's file."""
    if not any(s.registry_lines or s.tables for s in sources):
        return None
    own = [(s.registry_lines + s.tables).replace("node.example", f"{s.name}.example") for s in sources]
    dotted = [text for s, text in zip(sources, own, strict=True) if s.registry_lines]
    tables = [text for s, text in zip(sources, own, strict=True) if s.tables]
    return "\n".join(["version = 2", REGISTRY_TABLE, '  config_path = ""', *dotted, *tables])


@dataclass
class Node:
    root: Path
    config: Path

    def args(self) -> list[str]:
        return ["--root", str(self.root), "--config", str(self.config), "--containerd-version", VERSION]


def make_node(tmp_path: Path, sources: list[Source]) -> Node:
    root = tmp_path / "node"
    shutil.copytree(EXAMPLES / "node", root)
    config = node_config(sources)
    if config is not None:
        (root / "etc/containerd/config.toml").write_text(config)
    inp = tmp_path / "input"
    inp.mkdir()
    for s in sources:
        for name, content in s.files.items():
            (inp / name).write_text(content)
    (inp / "registries.yaml").write_text(registries_yaml(sources))
    return Node(root, inp / "registries.yaml")


def cli_outputs(node: Node, out_dir: Path) -> dict[str, tuple[str, str]]:
    """(stdout, stderr with the JSON log) of every one-shot command, before and after apply."""
    a = node.args()
    commands = {
        "diff": ["diff", *a],
        "diff -o json": ["diff", "-o", "json", *a],
        "validate": ["validate", *a],
        "validate -o json": ["validate", "-o", "json", *a],
        "render": ["render", "--out", str(out_dir), *a],
        "explain -o json": ["explain", "reg.example/app:1", "-o", "json", *a],
        "doctor -o json": ["doctor", "-o", "json", "--no-network", "--no-cri", *a],
        "uninstall --dry-run": ["uninstall", "--dry-run", "--restart-method", "none", *a],
        "apply -o json": ["apply", "-o", "json", *a],
        "diff after apply": ["diff", *a],
        "doctor -o json after apply": ["doctor", "-o", "json", "--no-network", "--no-cri", *a],
        "uninstall --dry-run after apply": ["uninstall", "--dry-run", "--restart-method", "none", *a],
    }
    outputs = {}
    for name, argv in commands.items():
        _rc, out, err = run(*argv)
        outputs[name] = (out, err)
    return outputs


def leaks(outputs: dict[str, tuple[str, str]], sources: list[Source]) -> list[str]:
    """`<source> in <output> <stream>` for every secret form found anywhere."""
    return [
        f"{s.name} in {where} {stream}"
        for where, texts in outputs.items()
        for stream, text in zip(("stdout", "stderr"), texts, strict=True)
        for s in sources
        for secret in s.secrets()
        if secret in text
    ]


@pytest.mark.parametrize("source", INPUT_SOURCES, ids=lambda s: s.name)
def test_input_secrets_never_shown(source: Source, tmp_path: Path) -> None:
    node = make_node(tmp_path, [source])
    outputs = cli_outputs(node, tmp_path / "out")
    assert leaks(outputs, [source]) == []
    assert source.marker in (node.root / source.lands_in).read_text(), "the secret never reached the node"
    assert source.shown in outputs["diff"][0]


@pytest.mark.parametrize("source", SPELLINGS, ids=lambda s: s.name)
def test_node_config_secrets_never_shown_whatever_the_spelling(source: Source, tmp_path: Path) -> None:
    node = make_node(tmp_path, [source])
    outputs = cli_outputs(node, tmp_path / "out")
    assert leaks(outputs, [source]) == []
    diff = json.loads(outputs["diff -o json"][0])
    [config_diff] = [op["diff"] for op in diff["operations"] if op["path"] == "/etc/containerd/config.toml"]
    assert source.shown in config_diff, "the secret's line is not in the diff: this case tests nothing"
    assert source.marker in (node.root / "etc/containerd/config.toml").read_text()  # kept on the node


def test_misspelled_credential_field_never_shown(tmp_path: Path) -> None:
    node = make_node(tmp_path, [MISSPELLED])
    outputs = cli_outputs(node, tmp_path / "out")
    assert "credentials[0].Password: unknown field" in outputs["validate"][1]  # refused, and said where
    assert leaks(outputs, [MISSPELLED]) == []


def _get(port: int, path: str) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return f"{r.status} {r.read().decode()}"
    except urllib.error.HTTPError as e:
        return f"{e.code} {e.read().decode()}"


def _port(log: Path) -> int | None:
    for line in log.read_text().splitlines():
        if '"listening"' in line:
            return int(json.loads(line)["address"].rsplit(":", 1)[1])
    return None


RunDaemon = Callable[[Node], dict[str, tuple[str, str]]]


@pytest.fixture
def daemon_outputs() -> Iterator[RunDaemon]:
    """Runs `nodecfg run` on a node and returns what it showed; kills what is left at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(node: Node) -> dict[str, tuple[str, str]]:
        """Run `nodecfg run` (no containerd: it reports that, not ready) until its first reconcile."""
        log = node.root.parent / "daemon.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("NODECFG_")}
        argv = [sys.executable, "-m", "nodecfg", "run", *node.args(), "--restart-method", "none"]
        argv += ["--listen", "127.0.0.1:0", "--node-name", "n1"]
        with open(log, "wb") as f:
            proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        procs.append(proc)
        status = node.root / "var/lib/nodecfg/status.json"
        deadline = time.monotonic() + 30
        while not (status.exists() and json.loads(status.read_text()).get("last") and _port(log)):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        port = _port(log)
        assert port is not None
        outputs = {path: (_get(port, path), "") for path in ("/readyz", "/healthz", "/metrics")}
        outputs["status.json"] = (status.read_text(), "")
        for argv_status in (["status"], ["status", "-o", "json"]):
            _rc, out, err = run(*argv_status, "--root", str(node.root))
            outputs[" ".join(argv_status)] = (out, err)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        outputs["daemon log"] = ("", log.read_text())
        return outputs

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_daemon_never_shows_a_secret(daemon_outputs: RunDaemon, tmp_path: Path) -> None:
    sources = [*INPUT_SOURCES, *SPELLINGS]
    node = make_node(tmp_path, sources)
    outputs = daemon_outputs(node)
    assert leaks(outputs, sources) == []
    assert '"event": "reconcile"' in outputs["daemon log"][1]
    assert 'nodecfg_reconciles_total{result="ok"} 1' in outputs["/metrics"][0]
    for s in INPUT_SOURCES:  # the daemon did apply them
        assert s.marker in (node.root / s.lands_in).read_text()


def test_daemon_never_shows_a_misspelled_field(daemon_outputs: RunDaemon, tmp_path: Path) -> None:
    node = make_node(tmp_path, [MISSPELLED])
    outputs = daemon_outputs(node)
    assert outputs["/readyz"][0].startswith("503 not ok: invalid-input: ")
    assert leaks(outputs, [MISSPELLED]) == []
