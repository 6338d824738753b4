"""The e2e lab (registries, names, images) and a test node (containerd + nodecfg), usable from
pytest fixtures and from the benchmarks."""

from __future__ import annotations

import ctypes
import io
import json
import shlex
import shutil
import socket
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from nodecfg.cli import main
from nodecfg.node.cri import CRIError
from tests.e2e import releases
from tests.e2e.harness import (
    PKI,
    Containerd,
    Image,
    RecordingProxy,
    Registry,
    SwitchableProxy,
    build_oci_layout,
    free_port,
    hosts_entries,
    make_pki,
    push,
    run_nodecfg,
    start_registry,
    stop_process,
)
from tests.e2e.kube import DaemonProcess, KubeletVolume


def _become_subreaper() -> None:
    """containerds started by a restart command are re-parented to this process, which reaps
    them when it stops them (PR_SET_CHILD_SUBREAPER), instead of to whatever PID 1 is here."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


_become_subreaper()

NAMES = ["plain.test", "upstream.test", "tls.test", "auth.test", "mtls.test", "headers.test", "dead.test", "flaky.test"]
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
    # The same image (same digest) on two registries: mirrors of one upstream, as in real life.
    ("plain", "same/app:1"),
    ("upstream", "same/app:1"),
]
SAME_EVERYWHERE = {"same/app:1"}


def hub(mirror: str, extra: str = "") -> str:
    """A registries.yaml: Docker Hub through the plain-HTTP mirror `mirror`, plus `extra` lines."""
    return f'version: 1\nregistries:\n  docker.io:\n    mirrors: ["http://{mirror}"]\n{extra}'


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
    flaky: SwitchableProxy  # in front of `plain`: forwards, or fails the ways mirrors fail
    images: dict[tuple[str, str], Image] = field(default_factory=dict)

    def image(self, registry: str, ref: str) -> Image:
        return self.images[(registry, ref)]

    def registry_key(self, host: str) -> str | None:
        """Which lab registry serves content at host:port (the header proxy serves `plain`'s)."""
        if host in (self.proxy.host, self.flaky.host):
            return "plain"
        for key in ("plain", "upstream", "tls", "auth", "mtls"):
            reg = getattr(self, key)
            if reg.host == host or host.endswith(f":{reg.port}"):  # also under another name (a host alias)
                return key
        return None

    def first_that_can_serve(self, endpoints: list[dict[str, Any]], tag: str) -> tuple[str, str] | None:
        """(registry, repo:tag) of the first endpoint, in `explain`'s order, that is up and holds
        the image at the path explain says containerd asks for."""
        for e in endpoints:
            if not e["resolves"]:
                continue
            parts = urlsplit(e["request"])
            key = self.registry_key(parts.netloc)
            repo = parts.path.split("/v2/", 1)[1].rsplit("/manifests/", 1)[0]
            if key is not None and (key, f"{repo}:{tag}") in self.images:
                return key, f"{repo}:{tag}"
        return None


@contextmanager
def open_lab() -> Iterator[Lab]:
    """Start the registries, the proxy and the dead port; stop them all on exit."""
    d = Path(tempfile.mkdtemp(prefix="nodecfg-e2e-lab-"))
    started: list[Registry] = []
    proxy: RecordingProxy | None = None
    flaky: SwitchableProxy | None = None
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
            flaky = SwitchableProxy("flaky.test", regs["plain"])
            # Bound but never listening: connections are refused at once, and no one else takes the port.
            dead_sock.bind(("127.0.0.1", 0))
            lab = Lab(d, pki, proxy=proxy, dead=f"dead.test:{dead_sock.getsockname()[1]}", flaky=flaky, **regs)
            layout = d / "layout"
            for key, ref in IMAGES:
                tag = f"{key}-{ref.replace('/', '-').replace(':', '-')}"
                content = f"identical {ref}" if ref in SAME_EVERYWHERE else f"{regs[key].name} {ref}"
                lab.images[(key, ref)] = build_oci_layout(layout, tag, content)
                push(layout, tag, regs[key], ref, pki)
            yield lab
    finally:
        dead_sock.close()
        if proxy is not None:
            proxy.stop()
        if flaky is not None:
            flaky.stop()
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
    explained: list[tuple[str, str]] = field(default_factory=list)  # (ref, first endpoint) per checked pull

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

    def converge(
        self, yaml_text: str | None = None, files: dict[str, str | bytes] | None = None, env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """`nodecfg apply`, then restart the test containerd only if nodecfg says it must."""
        self.write_input(yaml_text, files)
        r = run_nodecfg("apply", "-o", "json", *self.nodecfg_args(), env=env)
        self.outputs += [r.stdout, r.stderr]
        assert r.returncode == 0, r.stderr
        report: dict[str, Any] = json.loads(r.stdout)
        self.reports.append(report)
        if report["restartRequired"]:
            self.containerd.restart()
            self.restarts += 1
        return report

    def loaded_config_path(self) -> str | None:
        """The config_path the running containerd loaded (it must be CRI-ready).

        1.x reports it in the verbose CRI status. 2.x reports no registry config there, so it is
        what that release's `containerd config dump` makes of config.toml, which must not have
        changed since this containerd started.
        """
        with self.containerd.cri() as c:
            h = c.health()
        assert h.ready, h.describe()
        if releases.current().reports_config_path_over_cri:
            return h.config_path
        assert h.config_path is None, "2.x was not expected to report its registry config over CRI"
        started = psutil.Process(self.containerd.pid).create_time()
        assert started >= self.containerd.config.stat().st_mtime - 1, "config.toml changed after containerd started"
        plugins = self.containerd.dump()["plugins"]
        value = plugins["io.containerd.cri.v1.images"]["registry"]["config_path"]
        return str(value) if value else None

    def pull(self, ref: str) -> str:
        """A CRI pull (what kubelet does); returns the image id. The image is removed first, so
        every pull goes to a registry. Every pull is checked against `nodecfg explain`."""
        with self.containerd.cri() as c:
            c.remove(ref)
            image_id = c.pull(ref)
        self.check_explained(ref, image_id)
        return image_id

    def eventually_pulls(self, ref: str, within: float) -> str:
        """Pull until it works or `within` seconds pass (for changes containerd sees with a delay)."""
        deadline = time.monotonic() + within
        while True:
            try:
                return self.pull(ref)
            except CRIError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def explain(self, ref: str) -> dict[str, Any]:
        """`nodecfg explain -o json` for this node (in process: it only reads files)."""
        out, err = io.StringIO(), io.StringIO()
        args = ["explain", ref, "-o", "json", *self.nodecfg_args()]
        assert main(args, out, err) == 0, err.getvalue()
        self.outputs += [out.getvalue(), err.getvalue()]
        result: dict[str, Any] = json.loads(out.getvalue())
        return result

    def check_explained(self, ref: str, image_id: str) -> None:
        """The registry that served the pull is the first endpoint explain names that can serve it
        (is up and holds the image at the request path explain shows)."""
        result = self.explain(ref)
        tag = result["image"].rsplit(":", 1)[1]
        first = self.lab.first_that_can_serve(result["endpoints"], tag)
        assert first is not None, f"explain names no endpoint that holds {ref}: {result['endpoints']}"
        assert self.lab.image(*first).id == image_id, (
            f"explain says {first} serves {ref} first, but the pull returned {image_id}: {json.dumps(result, indent=1)}"
        )
        self.explained.append((ref, result["endpoints"][0]["url"]))

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

    def follow(self, files: dict[str, str | bytes], *, ready: bool = True, **kw: Any) -> tuple[KubeletVolume, DaemonProcess]:
        """Put `files` in the ConfigMap-style volume, start a daemon on it and (by default) wait
        until it is ready; returns the volume (to update) and the daemon."""
        vol = KubeletVolume(self.volume_dir)
        vol.update(files)
        d = self.daemon(**kw)
        d.start()
        if ready:
            d.wait_ready()
        return vol, d


@contextmanager
def open_node(lab: Lab, shape: str = "v2") -> Iterator[Node]:
    """A node with a running containerd (Debian's config.toml, as `shape`) under a short temp dir."""
    # A short path: the containerd socket path must fit in sockaddr_un (108 bytes).
    d = Path(tempfile.mkdtemp(prefix="nodecfg-e2e-"))
    cd = Containerd(d, shape)
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
        shutil.rmtree(d, ignore_errors=True)
