"""The daemon's HTTP listener: /healthz (the loop is alive), /readyz (applied and healthy), /metrics."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from dataclasses import dataclass

PATHS = ("/healthz", "/readyz", "/metrics")


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

        self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="nodecfg-http", daemon=True)

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()


def parse_listen(value: str) -> tuple[str, int] | None:
    """`host:port`, `:port` (all addresses) or `none`; raise ValueError otherwise."""
    if value in ("", "none", "off"):
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen must be host:port, :port or none, not {value!r}")
    return (host.strip("[]") or "0.0.0.0", int(port))  # noqa: S104 (probes reach the pod's IP)
