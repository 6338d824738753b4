"""Real parts for end-to-end tests: containerd 1.6, docker-registry, skopeo, openssl, /etc/hosts names.

Everything listens on 127.0.0.1 on ports chosen here, lives under temp dirs, and is stopped by its
own pid. Registries get names that are not loopback literals (containerd talks plain HTTP and skips
TLS checks for 127.0.0.1 and localhost, which would make HTTP/TLS tests pass with no config at all).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import platform
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from nodecfg.node.cri import CRIClient, CRIError
from tests.e2e.releases import REGISTRY_TABLE, V2_0
from tests.e2e.releases import current as current_release

REPO = Path(__file__).resolve().parents[2]
PACKAGES = "containerd docker-registry skopeo apache2-utils openssl dbus-daemon"
INSTALL = f"apt-get update && apt-get install -y {PACKAGES}"
BINARIES = {
    "containerd": "containerd",
    "ctr": "containerd",
    "docker-registry": "docker-registry",
    "skopeo": "skopeo",
    "htpasswd": "apache2-utils",
    "openssl": "openssl",
    "dbus-daemon": "dbus-daemon",
}
HOSTS_FILE = "/etc/hosts"
HOSTS_MARK = "# nodecfg-e2e "


def missing_binaries() -> list[str]:
    """Debian packages whose binaries are not on PATH."""
    return sorted({pkg for exe, pkg in BINARIES.items() if shutil.which(exe) is None})


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None, log: Path, timeout: float = 15.0) -> None:
    """Until something accepts on 127.0.0.1:port; fail early with the log if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s:\n{log.read_text()[-3000:]}")


def wait_for_path(path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 15.0) -> None:
    """Until `path` exists (a socket a server creates); fail early if the process died."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; always reaps the process."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _gone(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE  # dead; only its parent can reap it
    except psutil.NoSuchProcess:
        return True


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """Like stop_process, for a process this one may not have started (not its child)."""
    try:
        p = psutil.Process(pid)
        p.terminate()
    except psutil.NoSuchProcess:
        return
    deadline = time.monotonic() + timeout
    while not _gone(p):
        if time.monotonic() > deadline:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
            deadline = time.monotonic() + 5
        time.sleep(0.02)
    with contextlib.suppress(ChildProcessError, psutil.Error):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is ours (a subreaper inherits orphans)


def clean_env() -> dict[str, str]:
    """The environment for child processes: no proxy settings, so nothing leaves loopback."""
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


# --------------------------------------------------------------------------------------------
# Names: lines in /etc/hosts, added for the session and removed afterwards.


def _without_blocks(text: str, keep: Callable[[int], bool]) -> str:
    """`text` minus every marked block whose owner pid `keep` rejects."""
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith(HOSTS_MARK) and line.rstrip().endswith(" begin"):
            pid = line[len(HOSTS_MARK) :].split()[0]
            skipping = not (pid.isdigit() and keep(int(pid)))
            if not skipping:
                out.append(line)
        elif skipping:
            skipping = not (line.startswith(HOSTS_MARK) and line.rstrip().endswith(" end"))
        else:
            out.append(line)
    return "".join(out)


def _rewrite_hosts(change: Callable[[str], str]) -> None:
    # In place: /etc/hosts is often a bind mount that cannot be renamed over.
    with open(HOSTS_FILE, "r+", encoding="utf-8") as f:
        text = change(f.read())
        f.seek(0)
        f.write(text)
        f.truncate()


@contextmanager
def hosts_entries(names: list[str]) -> Iterator[None]:
    """Resolve `names` to 127.0.0.1 through a marked block in /etc/hosts, removed afterwards.
    Blocks left by sessions that were killed (their pid is gone) are removed first."""
    me = os.getpid()
    block = f"{HOSTS_MARK}{me} begin\n" + "".join(f"127.0.0.1 {n}\n" for n in names) + f"{HOSTS_MARK}{me} end\n"

    def add(text: str) -> str:
        text = _without_blocks(text, psutil.pid_exists)
        return text + ("" if text.endswith("\n") or not text else "\n") + block

    _rewrite_hosts(add)
    try:
        yield
    finally:
        _rewrite_hosts(lambda text: _without_blocks(text, lambda pid: pid != me))


# --------------------------------------------------------------------------------------------
# Certificates.


@dataclass(frozen=True)
class PKI:
    """A CA, a server certificate for every test name, and a client certificate, as PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: trusting it must not be enough


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_pki(d: Path, names: list[str]) -> PKI:
    """Generate the certificates with the openssl CLI (RSA 2048, 2 days)."""
    d.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=nodecfg e2e {ca}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", d / f"{ca}.key", "-out", d / f"{ca}.pem",
        )  # fmt: skip
    san = ",".join([f"DNS:{n}" for n in names] + ["IP:127.0.0.1"])
    for leaf, usage, ext in (("server", "serverAuth", f"subjectAltName={san}"), ("client", "clientAuth", "")):
        _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=nodecfg e2e {leaf}",
                 "-keyout", d / f"{leaf}.key", "-out", d / f"{leaf}.csr")  # fmt: skip
        extfile = d / f"{leaf}.ext"
        extfile.write_text(f"extendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n" + (ext + "\n" if ext else ""))
        _openssl("x509", "-req", "-in", d / f"{leaf}.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", extfile, "-out", d / f"{leaf}.pem")  # fmt: skip
    return PKI(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key", d / "other-ca.pem")


# --------------------------------------------------------------------------------------------
# Registries.


@dataclass
class Registry:
    """One docker-registry process (CNCF distribution 2.8) on 127.0.0.1."""

    name: str  # the /etc/hosts name the tests use, e.g. "plain.test"
    port: int
    tls: bool
    user: str | None = None
    password: str | None = None
    client_certs: bool = False
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def host(self) -> str:
        """host:port as it appears in image references and hosts.toml."""
        return f"{self.name}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def requests(self) -> str:
        """The registry's log so far (every request is logged)."""
        return self.log.read_text() if self.log else ""


def start_registry(d: Path, reg: Registry, pki: PKI) -> Registry:
    """Write a config for `reg` under `d` and start it."""
    d.mkdir(parents=True, exist_ok=True)
    lines = [
        "version: 0.1",
        "log: {level: info, accesslog: {disabled: false}}",
        f"storage: {{filesystem: {{rootdirectory: {d / 'data'}}}, delete: {{enabled: true}}}}",
        "http:",
        f"  addr: 127.0.0.1:{reg.port}",
        "  secret: nodecfg-e2e-not-a-secret",
    ]
    if reg.tls:
        lines += ["  tls:", f"    certificate: {pki.server_cert}", f"    key: {pki.server_key}"]
        if reg.client_certs:
            lines += ["    clientcas:", f"      - {pki.ca}"]
    if reg.user:
        htpasswd = d / "htpasswd"
        entry = subprocess.run(
            ["htpasswd", "-Bbn", reg.user, reg.password or ""], check=True, capture_output=True, text=True
        ).stdout
        htpasswd.write_text(entry)
        lines += ["auth:", "  htpasswd:", "    realm: nodecfg-e2e", f"    path: {htpasswd}"]
    (d / "config.yml").write_text("\n".join(lines) + "\n")
    reg.log = d / "registry.log"
    with open(reg.log, "wb") as log:
        reg.proc = subprocess.Popen(
            ["docker-registry", "serve", str(d / "config.yml")], stdout=log, stderr=subprocess.STDOUT, env=clean_env()
        )
    wait_for_port(reg.port, reg.proc, reg.log)
    return reg


class RecordingProxy:
    """A plain-HTTP reverse proxy in front of a registry that records every request's headers."""

    def __init__(self, name: str, upstream: Registry) -> None:
        self.name = name
        self.upstream = upstream
        self.seen: list[tuple[str, str, dict[str, list[str]]]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                seen = {k.lower(): self.headers.get_all(k) or [] for k in self.headers}
                proxy.seen.append((self.command, self.path, seen))
                conn = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(k, v)
                length = resp.getheader("content-length") if self.command == "HEAD" else str(len(body))
                self.send_header("Content-Length", length or "0")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                conn.close()

            do_GET = do_HEAD = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"{self.name}:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class SwitchableProxy:
    """A TCP proxy in front of a registry that fails the ways mirrors fail, switched at run time.

    forward: pipe bytes to the registry; slow: the same after a delay; hang: accept and never
    answer; refuse: nothing listens (connection refused); reset: accept and reset (RST); 503:
    answer every request with 503. Switching closes the connections already open, as an outage
    does (containerd keeps idle connections to a mirror).
    """

    MODES = ("forward", "slow", "hang", "refuse", "reset", "503")

    def __init__(self, name: str, upstream: Registry, slow_s: float = 0.5) -> None:
        self.name = name
        self.upstream = upstream
        self.slow_s = slow_s
        self.mode = "forward"
        self.accepted: dict[str, int] = {}
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._stopped = threading.Event()
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._listen()

    @property
    def host(self) -> str:
        return f"{self.name}:{self.port}"

    def _listen(self) -> None:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def set(self, mode: str) -> None:
        """Switch to `mode`; connections open now are closed (reset)."""
        assert mode in self.MODES, mode
        with self._lock:
            old, self.mode = self.mode, mode
            conns, self._open = self._open, []
        for c in conns:
            _reset(c)
        if mode == "refuse" and old != "refuse" and self._listener is not None:
            self._listener.close()
            self._listener = None
        elif mode != "refuse" and self._listener is None:
            self._listen()

    def stop(self) -> None:
        self._stopped.set()
        self.set("refuse")

    def _accept(self, ls: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                conn, _addr = ls.accept()
            except OSError:
                return  # closed: refuse mode or stopped
            with self._lock:
                mode = self.mode
                self.accepted[mode] = self.accepted.get(mode, 0) + 1
                self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn, mode), daemon=True).start()

    def _serve(self, conn: socket.socket, mode: str) -> None:
        try:
            if mode == "reset":
                _reset(conn)
            elif mode == "hang":
                while conn.recv(65536):
                    pass
            elif mode == "503":
                buf = b""
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                conn.close()
            else:
                if mode == "slow":
                    time.sleep(self.slow_s)
                up = socket.create_connection(("127.0.0.1", self.upstream.port), timeout=30)
                with self._lock:
                    self._open.append(up)
                t = threading.Thread(target=_pipe, args=(up, conn), daemon=True)
                t.start()
                _pipe(conn, up)
                t.join()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()


def _reset(s: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a reset, not a clean end."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


# --------------------------------------------------------------------------------------------
# Images: an OCI layout written by hand, pushed with skopeo.


def goarch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(m, m)


@dataclass(frozen=True)
class Image:
    """What a pull can be checked against: CRI's image_ref is the config digest (the image id)."""

    id: str
    manifest_digest: str


def _blob(layout: Path, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256" / digest.split(":")[1]).write_bytes(data)
    return digest, len(data)


def build_oci_layout(layout: Path, tag: str, content: str) -> Image:
    """A one-layer image whose only file, /served-by, holds `content` (so each image is unique)."""
    (layout / "blobs/sha256").mkdir(parents=True, exist_ok=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = content.encode()
        info = tarfile.TarInfo("served-by")
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        tar.addfile(info, io.BytesIO(data))
    layer_tar = raw.getvalue()
    layer_digest, layer_size = _blob(layout, gzip.compress(layer_tar, mtime=0))
    config = {
        "architecture": goarch(),
        "os": "linux",
        "config": {"Env": ["PATH=/"], "Labels": {"nodecfg.e2e": content}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
    }
    config_digest, config_size = _blob(layout, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size}],
    }
    manifest_digest, manifest_size = _blob(layout, json.dumps(manifest, sort_keys=True).encode())
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
    index["manifests"] = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] != tag]
    index["manifests"].append(
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    )
    index_path.write_text(json.dumps(index))
    return Image(config_digest, manifest_digest)


def push(layout: Path, tag: str, reg: Registry, repo: str, pki: PKI) -> None:
    """skopeo copy from the layout to `reg` (addressed by 127.0.0.1, TLS not verified for the push)."""
    cmd = ["skopeo", "copy", "--insecure-policy", "--quiet", f"oci:{layout}:{tag}", f"docker://127.0.0.1:{reg.port}/{repo}"]
    cmd += ["--dest-tls-verify=false"]
    if reg.user:
        cmd += ["--dest-creds", f"{reg.user}:{reg.password}"]
    if reg.client_certs:
        certs = layout.parent / f"skopeo-certs-{reg.name}"
        certs.mkdir(exist_ok=True)
        shutil.copy(pki.client_cert, certs / "client.cert")
        shutil.copy(pki.client_key, certs / "client.key")
        cmd += ["--dest-cert-dir", str(certs)]
    subprocess.run(cmd, check=True, capture_output=True, env=clean_env(), timeout=120)


# --------------------------------------------------------------------------------------------
# containerd.


@dataclass
class Containerd:
    """A containerd with its own root, state, sockets and config.toml under `d`.

    `shape` is the config.toml's form: "v2" (`version = 2`, read by every release), "v3"
    (`version = 3`, containerd 2.x only) or "v4" (`version = 4`, 2.3+ only).
    """

    d: Path
    shape: str = "v2"
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.d / "containerd.log"

    @property
    def config(self) -> Path:
        return self.d / "config.toml"

    @property
    def socket(self) -> str:
        return str(self.d / "c.sock")

    @property
    def registry_table(self) -> str:
        """The header of the registry table this shape's containerd reads."""
        return REGISTRY_TABLE[self.shape]

    def base_config(self, extra: str = "") -> str:
        """The config.toml a node starts with: Debian's shape (or its v3 or v4 form), pointed at
        this test's dirs."""
        version = int(self.shape[1:])
        if version >= 4:  # version 4 (2.3+): the servers are plugins of their own
            servers = (
                f'[plugins."io.containerd.server.v1.grpc"]\n  address = "{self.socket}"\n'
                f'[plugins."io.containerd.server.v1.ttrpc"]\n  address = "{self.socket}.ttrpc"\n'
            )
        else:
            servers = f'[grpc]\n  address = "{self.socket}"\n[ttrpc]\n  address = "{self.socket}.ttrpc"\n'
        head = (
            f"version = {version}\n"
            f'root = "{self.d}/root"\nstate = "{self.d}/state"\n'
            f"{servers}"
            f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{self.d}/opt"\n'
        )
        # The native snapshotter works on any filesystem (overlayfs does not inside every sandbox).
        if version >= 3:
            snapshotter = '[plugins."io.containerd.cri.v1.images"]\n  snapshotter = "native"\n'
        else:
            snapshotter = '[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "native"\n'
        if current_release().version >= V2_0:
            # 2.x reads the CRI snapshotter from the images plugin (a v2 file's
            # `containerd.snapshotter` is not migrated there), and pulls through the transfer
            # service, which unpacks only for the snapshotters of its own unpack_config (overlayfs
            # by default): without both a CRI pull fails with "no unpack platforms defined".
            if self.shape == "v2":
                snapshotter += '[plugins."io.containerd.cri.v1.images"]\n  snapshotter = "native"\n'
            snapshotter += (
                '[[plugins."io.containerd.transfer.v1.local".unpack_config]]\n'
                f'  platform = "linux/{goarch()}"\n  snapshotter = "native"\n'
            )
        return head + snapshotter + extra

    @property
    def pid_file(self) -> Path:
        return self.d / "containerd.pid"

    @property
    def pid(self) -> int:
        """The containerd running now (whoever started it: this object or a restart command)."""
        return int(self.pid_file.read_text())

    def start(self, timeout: float = 20.0, config: Path | None = None) -> None:
        """Start and wait until the CRI API answers (whether or not the CRI plugin is healthy)."""
        with open(self.log, "ab") as log:
            # Its own session: a restart command run by nodecfg may outlive this object's view.
            self.proc = subprocess.Popen(
                ["containerd", "--config", str(config or self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                start_new_session=True,
            )
        self.pid_file.write_text(str(self.proc.pid))
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if os.path.exists(self.socket):
                with CRIClient(self.socket, timeout=1) as c:
                    try:
                        c.version()
                        return
                    except CRIError as e:
                        if e.code == "UNIMPLEMENTED":
                            return  # containerd is up, its CRI plugin failed: the caller checks health
            time.sleep(0.02)
        raise TimeoutError(f"containerd did not answer within {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Stop the containerd named by the pid file (SIGTERM, then SIGKILL), and reap our child."""
        if self.pid_file.exists():
            stop_pid(int(self.pid_file.read_text()))
            self.pid_file.unlink()
        if self.proc is not None:
            if self.proc.poll() is None:
                stop_process(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cri(self) -> CRIClient:
        return CRIClient(self.socket, timeout=60)

    def dump(self) -> dict[str, Any]:
        """`containerd --config <config.toml> config dump`: the merged config this release loads."""
        out = subprocess.run(
            ["containerd", "--config", str(self.config), "config", "dump"], capture_output=True, text=True, timeout=60, check=True
        )
        return tomllib.loads(out.stdout)

    def serves_cri(self) -> bool:
        """Whether the CRI API answers (False: containerd runs but its CRI plugin failed to load)."""
        with CRIClient(self.socket, timeout=10) as c:
            try:
                c.version()
                return True
            except CRIError as e:
                if e.code == "UNIMPLEMENTED":
                    return False
                raise

    def plugin_status(self, plugin_id: str = "cri") -> str:
        """STATUS column of `ctr plugins ls id==<plugin_id>` (ok, error, skip)."""
        out = subprocess.run(
            ["ctr", "-a", self.socket, "plugins", "ls", f"id=={plugin_id}"], check=True, capture_output=True, text=True
        ).stdout
        rows = out.strip().splitlines()[1:]
        return rows[0].split()[-1] if rows else "missing"

    def ctr_pull(self, ref: str, hosts_dir: Path) -> subprocess.CompletedProcess[str]:
        """`ctr images pull --hosts-dir`: reads hosts.toml only, never config.toml."""
        return subprocess.run(
            ["ctr", "-a", self.socket, "-n", "nodecfg-e2e-ctr", "images", "pull", *current_release().ctr_pull_flags,
             "--snapshotter", "native", "--hosts-dir", str(hosts_dir), ref],
            capture_output=True, text=True, env=clean_env(), timeout=120, check=False,
        )  # fmt: skip

    def ctr_image_digest(self, ref: str) -> str | None:
        out = subprocess.run(
            ["ctr", "-a", self.socket, "-n", "nodecfg-e2e-ctr", "images", "ls", f"name=={ref}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        for line in out.splitlines()[1:]:
            parts = line.split()
            if parts and parts[0] == ref:
                return next((p for p in parts if p.startswith("sha256:")), None)
        return None


def run_nodecfg(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command line, as a separate process (what an admin or a unit file runs)."""
    return subprocess.run(
        [sys.executable, "-m", "nodecfg", *argv],
        check=False,
        capture_output=True,
        text=True,
        env={**clean_env(), **(env or {})},
        cwd=REPO,
        timeout=120,
    )
