"""The daemon's HTTP listener under what probes and networks really do: IPv6, a busy port, clients that abort."""

from __future__ import annotations

import socket
import struct
import urllib.request

import pytest

from nodecfg.daemon import server as server_module
from nodecfg.daemon.server import ListenError, ProbeAnswer, Server


def _server(host: str = "127.0.0.1", port: int = 0) -> Server:
    ok = ProbeAnswer(True, "fine")
    return Server(host, port, lambda: ok, lambda: ok, lambda: "nodecfg_up 1\n")


def test_an_ipv6_listen_address_is_served() -> None:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    s = _server("::1")
    s.start()
    try:
        assert urllib.request.urlopen(f"http://[::1]:{s.port}/healthz", timeout=5).read() == b"ok: fine\n"
    finally:
        s.stop()


def test_a_port_in_use_and_an_unknown_host_are_clear_errors() -> None:
    busy = _server()
    try:
        with pytest.raises(ListenError, match=rf"--listen 127\.0\.0\.1:{busy.port}: Address already in use"):
            _server(port=busy.port)
    finally:
        busy.stop()
    with pytest.raises(ListenError, match=r"--listen no-such-host\.invalid:9808: "):
        _server("no-such-host.invalid", 9808)


def test_clients_that_reset_or_stay_silent_leave_no_traceback_and_the_server_answers(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "CLIENT_TIMEOUT_S", 0.2)
    s = _server()
    s.start()
    try:
        for request in (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", b"", b"\x16\x03\x01garbage\r\n\r\n"):
            c = socket.create_connection(("127.0.0.1", s.port))
            if request:
                c.sendall(request)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()  # a reset
        silent = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        assert silent.recv(1) == b""  # dropped by the server's timeout, not held for ever
        silent.close()
        assert urllib.request.urlopen(f"http://127.0.0.1:{s.port}/metrics", timeout=5).read() == b"nodecfg_up 1\n"
    finally:
        s.stop()
    assert "Traceback" not in capsys.readouterr().err
