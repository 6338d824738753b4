"""Reach one registry endpoint the way containerd would.

The node's name resolution, the endpoint's TLS (CA, client pair, skip_verify), then
`GET <API root>/`.

Used by `doctor` (one probe per endpoint, explained) and by the daemon's mirror health checks
(one probe per endpoint per interval). No credentials are ever sent: a registry that wants them
answers 401, which is an answer.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass

from nodecfg.containerd.hosts_toml import HostEntry
from nodecfg.containerd.names import split_host_port
from nodecfg.node.fs import read_file
from nodecfg.node.paths import ETC_HOSTS, NodePaths


@dataclass(frozen=True)
class Reached:
    """What one probe found.

    `stage` is where it stopped: dns, connect, untrusted (the TLS certificate), tls (another
    handshake failure), http, or answered.
    """

    stage: str
    status: int | None = None  # the HTTP status, when the registry answered
    detail: str = ""  # the error, for a probe that did not get an answer
    address: str = ""
    how: str = ""  # how the name was resolved: literal address, node /etc/hosts, DNS
    seconds: float = 0.0

    @property
    def answered(self) -> bool:
        """An HTTP answer below 500: the server is up (2xx and 401 are registry API answers)."""
        return self.stage == "answered" and self.status is not None and self.status < 500

    def describe(self) -> str:
        """One line for logs and status (no secrets: probes carry none)."""
        if self.stage == "answered":
            return f"HTTP {self.status} in {self.seconds * 1000:.0f} ms"
        return f"{self.stage} failed: {self.detail}"


def node_hosts(paths: NodePaths) -> dict[str, str]:
    """Names the node's /etc/hosts pins (containerd resolves with the node's files, not ours)."""
    info = read_file(paths.real(ETC_HOSTS))
    out: dict[str, str] = {}
    for line in (info.content or b"").decode("utf-8", "replace").splitlines():
        fields = line.split("#", 1)[0].split()
        for name in fields[1:]:
            out.setdefault(name.lower(), fields[0])
    return out


def _resolve(host: str, port: int, pinned: dict[str, str]) -> tuple[str, str]:
    """(address, how it was found); raises OSError."""
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare)
        return bare, "literal address"
    except ValueError:
        pass
    if bare.lower() in pinned:
        return pinned[bare.lower()], "node /etc/hosts"
    info = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)
    return str(info[0][4][0]), "DNS"


def host_and_port(e: HostEntry) -> tuple[str, int]:
    """The name and port an endpoint is reached at (the scheme's port when none is written)."""
    host, port_text = split_host_port(e.host)
    if not host or not port_text.isdigit():
        host, port_text = e.host, ""
    return host, int(port_text) if port_text else (80 if e.scheme == "http" else 443)


def reach(e: HostEntry, pinned: dict[str, str], paths: NodePaths, timeout: float, agent: str = "nodecfg") -> Reached:
    """DNS, TCP, TLS and GET <API root>/, each step bounded by `timeout` seconds."""
    host, port = host_and_port(e)
    started = time.monotonic()
    try:
        addr, how = _resolve(host, port, pinned)
    except OSError as err:
        return Reached("dns", detail=str(err), seconds=time.monotonic() - started)
    name = host.strip("[]")
    try:
        sock: socket.socket = socket.create_connection((addr, port), timeout=timeout)
    except OSError as err:
        return Reached(
            "connect", detail=f"{type(err).__name__}: {err}", address=addr, how=how, seconds=time.monotonic() - started
        )
    try:
        if e.scheme == "https":
            ctx = ssl.create_default_context()
            for ca in e.ca:
                ctx.load_verify_locations(cafile=paths.real(ca))
            for cert, key in e.client[:1]:
                # No passphrase (containerd has none to give): an encrypted key fails here
                # instead of OpenSSL prompting on the terminal.
                ctx.load_cert_chain(paths.real(cert), paths.real(key) if key else None, password=lambda: "")
            if e.skip_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname=name)
    except ssl.SSLCertVerificationError as err:
        sock.close()
        return Reached(
            "untrusted", detail=err.verify_message or str(err), address=addr, how=how, seconds=time.monotonic() - started
        )
    except (OSError, ssl.SSLError) as err:
        sock.close()
        return Reached("tls", detail=f"{type(err).__name__}: {err}", address=addr, how=how, seconds=time.monotonic() - started)
    try:
        # The connection is made above (to the address found the node's way, with SNI for the
        # name); http.client only speaks HTTP over it, with the right Host header.
        conn = http.client.HTTPConnection(name, port, timeout=timeout)
        conn.sock = sock
        # Host as containerd sends it: the URL's host[:port] as written (http.client would add
        # the scheme's default port, which an exact-host router may not match).
        conn.request("GET", f"{e.path}/", headers={"Host": e.host, "User-Agent": agent})
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as err:
        return Reached("http", detail=f"{type(err).__name__}: {err}", address=addr, how=how, seconds=time.monotonic() - started)
    finally:
        sock.close()
    return Reached("answered", status=status, address=addr, how=how, seconds=time.monotonic() - started)
