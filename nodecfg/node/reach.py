"""Reach one registry endpoint the way containerd would.

The node's name resolution, the endpoint's TLS (CA, client pair, skip_verify), then
`GET <API root>/`.

Used by `doctor` (one probe per endpoint, explained) and by the daemon's mirror health checks
(one probe per endpoint per interval). No credentials are ever sent: a registry that wants them
answers 401, which is an answer.

A server that takes the connection (TCP, and TLS for https) and then sends no response headers
is its own outcome, `Stage.NO_ANSWER`: it is what a hung registry process, or a proxy or load
balancer with no backend to hand the request to, looks like, and what containerd 2.3+ gives up
on after a fixed 30 s per request (docs/containerd.md).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from nodecfg.containerd.hosts_toml import HostEntry
from nodecfg.containerd.names import split_host_port
from nodecfg.node.fs import read_file
from nodecfg.node.paths import ETC_HOSTS, NodePaths


class Stage(str, Enum):
    """Where a probe stopped: the step that failed, or `ANSWERED`."""

    DNS = "dns"  # the name did not resolve
    CONNECT = "connect"  # TCP: refused, unreachable, or no connection within the timeout
    UNTRUSTED = "untrusted"  # the TLS certificate
    TLS = "tls"  # another TLS handshake failure
    HTTP = "http"  # the request or the response failed (reset, closed, not HTTP)
    NO_ANSWER = "no-answer"  # connected (and TLS done), request sent, no response headers within the timeout
    ANSWERED = "answered"  # an HTTP status came back (`Reached.answered` says whether it counts as up)
    TIMEOUT = "timeout"  # given up at its deadline by the daemon's checker in a step with no timeout of its own (DNS)
    PROBE = "probe"  # the probe itself failed (a bug, not the registry)


@dataclass
class Progress:
    """The step a probe in flight is at, for whoever gives it up at a deadline (the daemon's checker).

    `stage` is what a failure of the current step would be reported as: `NO_ANSWER` once the
    request is sent and the probe waits for the response headers.
    """

    stage: Stage = Stage.DNS


@dataclass(frozen=True)
class Reached:
    """What one probe found: where it stopped (`Stage`), and what it saw there."""

    stage: Stage
    status: int | None = None  # the HTTP status, when the registry answered
    detail: str = ""  # the error, for a probe that did not get an answer
    address: str = ""
    how: str = ""  # how the name was resolved: literal address, node /etc/hosts, DNS
    seconds: float = 0.0

    @property
    def answered(self) -> bool:
        """An HTTP answer below 500: the server is up (2xx and 401 are registry API answers)."""
        return self.stage is Stage.ANSWERED and self.status is not None and self.status < 500

    def describe(self) -> str:
        """One line for logs and status (no secrets: probes carry none)."""
        if self.stage is Stage.ANSWERED:
            return f"HTTP {self.status} in {self.seconds * 1000:.0f} ms"
        if self.stage is Stage.NO_ANSWER:
            return f"connected but no answer: {self.detail}"
        return f"{self.stage.value} failed: {self.detail}"


def no_answer(timeout: float, address: str = "", how: str = "", seconds: float = 0.0) -> Reached:
    """The outcome of a probe whose request went out and whose response headers did not come back in time."""
    return Reached(Stage.NO_ANSWER, detail=f"no response headers within {timeout:g}s", address=address, how=how, seconds=seconds)


Pinned = dict[str, tuple[str, ...]]


def node_hosts(paths: NodePaths) -> Pinned:
    """Names the node's /etc/hosts pins, each with all its addresses in file order.

    containerd resolves with the node's files, not ours, and gets every address a name has there.
    """
    info = read_file(paths.real(ETC_HOSTS))
    out: dict[str, list[str]] = {}
    for line in (info.content or b"").decode("utf-8", "replace").splitlines():
        fields = line.split("#", 1)[0].split()
        for name in fields[1:]:
            addrs = out.setdefault(name.lower(), [])
            if fields[0] not in addrs:
                addrs.append(fields[0])
    return {name: tuple(addrs) for name, addrs in out.items()}


def dial_order(addresses: Sequence[str]) -> list[str]:
    """The order Go's dialer (containerd's) tries addresses in.

    Those of the first one's family first, then the others (RFC 6555 fallback), each group in the
    resolver's order.
    """
    if not addresses:
        return []
    v6 = [":" in a for a in addresses]
    return [a for a, f in zip(addresses, v6, strict=True) if f == v6[0]] + [
        a for a, f in zip(addresses, v6, strict=True) if f != v6[0]
    ]


def _resolve(host: str, port: int, pinned: Pinned) -> tuple[list[str], str]:
    """(addresses in dial order, how they were found); raises OSError."""
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare)
        return [bare], "literal address"
    except ValueError:
        pass
    if bare.lower() in pinned:
        return dial_order(pinned[bare.lower()]), "node /etc/hosts"
    info = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)
    return dial_order(list(dict.fromkeys(str(i[4][0]) for i in info))), "DNS"


def _connect(addresses: list[str], port: int, timeout: float) -> tuple[socket.socket, str]:
    """The first address that takes the connection, as Go's dialer goes through them.

    The time left is shared among the addresses not tried yet. Raises the first address's OSError.
    """
    deadline = time.monotonic() + timeout
    first: OSError | None = None
    for i, addr in enumerate(addresses):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            return socket.create_connection((addr, port), timeout=left / (len(addresses) - i)), addr
        except OSError as err:
            first = first or err
    raise first or TimeoutError(f"no address answered within {timeout:g}s")


def host_and_port(e: HostEntry) -> tuple[str, int]:
    """The name and port an endpoint is reached at (the scheme's port when none is written)."""
    host, port_text = split_host_port(e.host)
    if not host or not port_text.isdigit():
        host, port_text = e.host, ""
    return host, int(port_text) if port_text else (80 if e.scheme == "http" else 443)


def _wrap_tls(sock: socket.socket, e: HostEntry, paths: NodePaths, name: str) -> socket.socket:
    """The TLS handshake with the endpoint's CA, client pair and skip_verify, as containerd does it."""
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
    return ctx.wrap_socket(sock, server_hostname=name)


def _get(sock: socket.socket, e: HostEntry, name: str, port: int, *, timeout: float, agent: str, at: Progress) -> int:
    """The status of `GET <API root>/` over the connection made; TimeoutError when no response headers come in time."""
    # The connection is made (to the address found the node's way, with SNI for the name);
    # http.client only speaks HTTP over it, with the right Host header.
    conn = http.client.HTTPConnection(name, port, timeout=timeout)
    conn.sock = sock
    # Host as containerd sends it: the URL's host[:port] as written (http.client would add
    # the scheme's default port, which an exact-host router may not match).
    conn.request("GET", f"{e.path}/", headers={"Host": e.host, "User-Agent": agent})
    at.stage = Stage.NO_ANSWER
    return conn.getresponse().status


def reach(
    e: HostEntry,
    pinned: Pinned,
    paths: NodePaths,
    timeout: float,
    *,
    agent: str = "nodecfg",
    progress: Progress | None = None,
) -> Reached:
    """DNS, TCP, TLS and GET <API root>/, each step bounded by `timeout` seconds.

    `progress`, when given, follows the steps (for a caller that keeps a deadline of its own).
    """
    at = progress or Progress()
    host, port = host_and_port(e)
    started = time.monotonic()
    try:
        addresses, how = _resolve(host, port, pinned)
    except OSError as err:
        return Reached(Stage.DNS, detail=str(err), seconds=time.monotonic() - started)
    addr = ", ".join(addresses)

    def stopped(stage: Stage, detail: str = "", status: int | None = None) -> Reached:
        return Reached(stage, status, detail, address=addr, how=how, seconds=time.monotonic() - started)

    name = host.strip("[]")
    at.stage = Stage.CONNECT
    try:
        sock, addr = _connect(addresses, port, timeout)
    except OSError as err:
        return stopped(Stage.CONNECT, f"{type(err).__name__}: {err}")
    try:
        if e.scheme == "https":
            at.stage = Stage.TLS
            sock = _wrap_tls(sock, e, paths, name)
    except ssl.SSLCertVerificationError as err:
        sock.close()
        return stopped(Stage.UNTRUSTED, err.verify_message or str(err))
    except (OSError, ssl.SSLError) as err:
        sock.close()
        return stopped(Stage.TLS, f"{type(err).__name__}: {err}")
    at.stage = Stage.HTTP
    try:
        status = _get(sock, e, name, port, timeout=timeout, agent=agent, at=at)
    except TimeoutError as err:
        if at.stage is not Stage.NO_ANSWER:  # the request itself could not be sent in time
            return stopped(Stage.HTTP, f"{type(err).__name__}: {err}")
        # The request went out on a live connection and no complete status line and headers came
        # back in time (one that sends part of them and stops is the same to containerd: its
        # limit is on the whole response header).
        return no_answer(timeout, address=addr, how=how, seconds=time.monotonic() - started)
    except (OSError, http.client.HTTPException) as err:
        return stopped(Stage.HTTP, f"{type(err).__name__}: {err}")
    finally:
        sock.close()
    return stopped(Stage.ANSWERED, status=status)
