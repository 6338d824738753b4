"""The daemon's HTTP listener: /healthz (the loop is alive), /readyz (applied and healthy), /metrics."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

PATHS = ("/healthz", "/readyz", "/metrics")
# Prometheus and kubelet probes are a few connections at a time; more than this many at once are
# turned away, and a client that sends nothing is dropped after the timeout.
MAX_CONNECTIONS = 32
CLIENT_TIMEOUT_S = 10.0
BACKLOG = 128


class ListenError(Exception):
    """The --listen address cannot be served (in use, unknown host, no such address family)."""


class _HTTPServer(http.server.ThreadingHTTPServer):
    """A ThreadingHTTPServer with bounded threads, a real backlog, IPv6, and no tracebacks for clients that go away."""

    daemon_threads = True
    request_queue_size = BACKLOG

    def __init__(self, address: tuple[str, int], handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.address_family = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM)[0][0]
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that reset, timed out or sent garbage: nothing to log, the probe is its own report."""


@dataclass(frozen=True)
class ProbeAnswer:
    """An answer to a probe: ok or not, and why (one line)."""

    ok: bool
    reason: str


class Server:
    """A threaded HTTP server on `host:port` (port 0: any free port, see `.port`)."""

    def __init__(
        self,
        host: str,
        port: int,
        healthz: Callable[[], ProbeAnswer],
        readyz: Callable[[], ProbeAnswer],
        metrics: Callable[[], str],
    ) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = CLIENT_TIMEOUT_S

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, metrics(), "text/plain; version=0.0.4; charset=utf-8")
                elif path in ("/healthz", "/readyz"):
                    probe = healthz() if path == "/healthz" else readyz()
                    self._send(
                        200 if probe.ok else 503,
                        ("ok" if probe.ok else "not ok") + f": {probe.reason}\n",
                        "text/plain; charset=utf-8",
                    )
                else:
                    self._send(404, f"not found; try {', '.join(PATHS)}\n", "text/plain; charset=utf-8")

            def _send(self, code: int, body: str, ctype: str) -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass  # probes every few seconds would drown the reconcile events

        try:
            self._server = _HTTPServer((host, port), Handler)
        except OSError as e:  # socket.gaierror too
            raise ListenError(f"--listen {_joined(host, port)}: {e.strerror or e}") from None
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="nodecfg-http", daemon=True)

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which never ran otherwise
            self._server.shutdown()
        self._server.server_close()


def _joined(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_listen(value: str) -> tuple[str, int] | None:
    """`host:port`, `:port` (all addresses) or `none`; raise ValueError otherwise."""
    if value in ("", "none", "off"):
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen must be host:port, :port or none, not {value!r}")
    return (host.strip("[]") or "0.0.0.0", int(port))  # noqa: S104 (probes reach the pod's IP)
