"""Fixtures for the end-to-end suite: one lab of registries per session, one containerd per test."""

from __future__ import annotations

import ctypes
import json
import os
import shlex
import shutil
import socket
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from nodecfg.node.cri import CRIError
from tests.e2e.harness import (
    HOSTS_FILE,
    INSTALL,
    PKI,
    Containerd,
    Image,
    RecordingProxy,
    Registry,
    build_oci_layout,
    free_port,
    hosts_entries,
    make_pki,
    missing_binaries,
    push,
    run_nodecfg,
    start_registry,
    stop_process,
)
from tests.e2e.kube import DaemonProcess


def _become_subreaper() -> None:
    """containerds started by a restart command are re-parented to this process, which reaps
    them when it stops them (PR_SET_CHILD_SUBREAPER), instead of to whatever PID 1 is here."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


_become_subreaper()

NAMES = ["plain.test", "upstream.test", "tls.test", "auth.test", "mtls.test", "headers.test", "dead.test"]
AUTH_USER, AUTH_PASSWORD = "puller", "e2e-Pa55word-not-for-logs"

# What each registry holds: (registry, repository:tag). Every image has unique content, so the
# image id a pull returns names the registry that served it.
IMAGES = [
    ("plain", "library/hello:1"),
    ("plain", "team/app:3"),
    ("plain", "direct/app:1"),
    ("plain", "org1/library/hello:2"),
    ("plain", "headers/app:1"),
    ("upstream", "library/hello:1"),
    ("upstream", "team/app:2"),
    ("upstream", "team/app:3"),
    ("tls", "secure/app:1"),
    ("auth", "private/app:1"),
    ("auth", "library/hello:1"),
    ("mtls", "mtls/app:1"),
]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@dataclass
class Lab:
    """The registries every test can use; `images[(registry, ref)]` is what each one serves."""

    d: Path
    pki: PKI
    plain: Registry
    upstream: Registry
    tls: Registry
    auth: Registry
    mtls: Registry
    proxy: RecordingProxy
    dead: str  # host:port where connections are refused
    images: dict[tuple[str, str], Image] = field(default_factory=dict)

    def image(self, registry: str, ref: str) -> Image:
        return self.images[(registry, ref)]


def _unavailable(reason: str) -> None:
    """Skip locally; fail where the suite must run (CI sets NODECFG_E2E_REQUIRED=1)."""
    if os.environ.get("NODECFG_E2E_REQUIRED") == "1":
        pytest.fail(f"e2e cannot run here but NODECFG_E2E_REQUIRED=1: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    missing = missing_binaries()
    if missing:
        _unavailable(f"e2e needs Debian packages {', '.join(missing)}: {INSTALL}")
    if not os.access(HOSTS_FILE, os.W_OK):
        _unavailable(f"e2e needs to add test names to {HOSTS_FILE} (run as root, as CI does)")
    d = Path(tempfile.mkdtemp(prefix="nodecfg-e2e-lab-"))
    started: list[Registry] = []
    proxy: RecordingProxy | None = None
    dead_sock = socket.socket()
    try:
        with hosts_entries(NAMES):
            pki = make_pki(d / "pki", NAMES)
            regs = {
                "plain": Registry("plain.test", free_port(), tls=False),
                "upstream": Registry("upstream.test", free_port(), tls=False),
                "tls": Registry("tls.test", free_port(), tls=True),
                "auth": Registry("auth.test", free_port(), tls=True, user=AUTH_USER, password=AUTH_PASSWORD),
                "mtls": Registry("mtls.test", free_port(), tls=True, client_certs=True),
            }
            for key, reg in regs.items():
                started.append(start_registry(d / key, reg, pki))
            proxy = RecordingProxy("headers.test", regs["plain"])
            # Bound but never listening: connections are refused at once, and no one else takes the port.
            dead_sock.bind(("127.0.0.1", 0))
            lab = Lab(d, pki, proxy=proxy, dead=f"dead.test:{dead_sock.getsockname()[1]}", **regs)
            layout = d / "layout"
            for key, ref in IMAGES:
                tag = f"{key}-{ref.replace('/', '-').replace(':', '-')}"
                lab.images[(key, ref)] = build_oci_layout(layout, tag, f"{regs[key].name} {ref}")
                push(layout, tag, regs[key], ref, pki)
            yield lab
    finally:
        dead_sock.close()
        if proxy is not None:
            proxy.stop()
        for reg in started:
            if reg.proc is not None:
                stop_process(reg.proc)
                assert reg.proc.poll() is not None, f"{reg.name} still runs"
        shutil.rmtree(d, ignore_errors=True)


@dataclass
class Node:
    """A test containerd plus the nodecfg command line pointed at its config.toml and hosts dir."""

    d: Path
    containerd: Containerd
    lab: Lab
    restarts: int = 0
    reports: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # every nodecfg stdout and stderr, for secret checks
    daemons: list[DaemonProcess] = field(default_factory=list)

    @property
    def hosts_dir(self) -> Path:
        return self.d / "certs.d"

    @property
    def input(self) -> Path:
        return self.d / "input" / "registries.yaml"

    def nodecfg_args(self) -> list[str]:
        return [
            "--config", str(self.input), "--root", "/",
            "--containerd-config", str(self.containerd.config), "--hosts-dir", str(self.hosts_dir),
            "--state-dir", str(self.d / "nodecfg-state"),
        ]  # fmt: skip

    def write_input(self, yaml_text: str | None, files: dict[str, str | bytes] | None = None) -> None:
        """Write the input file (unless None) and the files it refers to, relative to it."""
        self.input.parent.mkdir(parents=True, exist_ok=True)
        for name, content in (files or {}).items():
            p = self.input.parent / name
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content)
        if yaml_text is not None:
            self.input.write_text(textwrap.dedent(yaml_text))

    def converge(self, yaml_text: str | None = None, files: dict[str, str | bytes] | None = None) -> dict[str, Any]:
        """`nodecfg apply`, then restart the test containerd only if nodecfg says it must."""
        self.write_input(yaml_text, files)
        r = run_nodecfg("apply", "-o", "json", *self.nodecfg_args())
        self.outputs += [r.stdout, r.stderr]
        assert r.returncode == 0, r.stderr
        report: dict[str, Any] = json.loads(r.stdout)
        self.reports.append(report)
        if report["restartRequired"]:
            self.containerd.restart()
            self.restarts += 1
        return report

    def pull(self, ref: str) -> str:
        """A CRI pull (what kubelet does); returns the image id. The image is removed first, so
        every pull goes to a registry."""
        with self.containerd.cri() as c:
            c.remove(ref)
            return c.pull(ref)

    def pull_error(self, ref: str) -> str:
        """A CRI pull that must fail; returns the error."""
        with self.containerd.cri() as c:
            c.remove(ref)
            try:
                image_id = c.pull(ref)
            except CRIError as e:
                return e.details
        raise AssertionError(f"pull of {ref} succeeded ({image_id}) but should have failed")

    def ctr_pull(self, ref: str) -> str:
        """`ctr images pull --hosts-dir` (hosts.toml only); returns the manifest digest it stored."""
        r = self.containerd.ctr_pull(ref, self.hosts_dir)
        assert r.returncode == 0, r.stderr[-2000:]
        digest = self.containerd.ctr_image_digest(ref)
        assert digest, f"ctr pulled {ref} but does not list it"
        return digest

    @property
    def volume_dir(self) -> Path:
        return self.d / "configmap"

    def daemon(
        self,
        *,
        method: str = "command",
        break_on: str | None = None,
        env: dict[str, str] | None = None,
        extra: list[str] | None = None,
    ) -> DaemonProcess:
        """A `nodecfg run` following the ConfigMap-style volume at `volume_dir` (not started)."""
        restart = [sys.executable, "-m", "tests.e2e.restart_containerd", str(self.d)]
        if break_on:
            restart += ["--break-on", break_on]
        args = [
            "--config", str(self.volume_dir / "registries.yaml"), "--root", "/",
            "--containerd-config", str(self.containerd.config), "--hosts-dir", str(self.hosts_dir),
            "--state-dir", str(self.d / "nodecfg-state"), "--containerd-socket", self.containerd.socket,
            "--restart-method", method, "--restart-command", shlex.join(restart),
            "--resync", "1h", "--node-name", "e2e-node", *(extra or []),
        ]  # fmt: skip
        d = DaemonProcess(args, self.d / f"daemon-{len(self.daemons)}.log", env)
        self.daemons.append(d)
        return d


@pytest.fixture
def node(lab: Lab, request: pytest.FixtureRequest) -> Iterator[Node]:
    # A short path: the containerd socket path must fit in sockaddr_un (108 bytes).
    d = Path(tempfile.mkdtemp(prefix="nodecfg-e2e-"))
    cd = Containerd(d)
    cd.config.write_text(cd.base_config())
    n = Node(d, cd, lab)
    try:
        cd.start()
        yield n
    finally:
        for daemon in n.daemons:
            if daemon.proc is not None:
                daemon.stop()
        cd.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(f"\n--- containerd log (tail) for {request.node.name}:\n{cd.log.read_text()[-4000:]}")
            for daemon in n.daemons:
                print(f"--- {daemon.log.name} (tail):\n{daemon.log.read_text()[-4000:]}")
            for f in sorted(n.hosts_dir.rglob("hosts.toml")) if n.hosts_dir.exists() else []:
                print(f"--- {f}:\n{f.read_text()}")
        shutil.rmtree(d, ignore_errors=True)
        # Anything the test left running under its dir (a shim, a stray daemon) is a bug here.
        leftover = [p.pid for p in psutil.process_iter(["cmdline"]) if str(d) in " ".join(p.info["cmdline"] or [])]
        assert not leftover, f"processes left behind under {d}: {leftover}"
