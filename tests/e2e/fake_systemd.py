"""A stand-in for the host systemd on a real dbus-daemon (systemd cannot run as PID 1 here).

It owns `org.freedesktop.systemd1` and implements the Manager calls nodecfg uses the way
systemd does: `Subscribe()`; `RestartUnit(name, mode)` answers with a job object path at once,
carries the restart out, then broadcasts `JobRemoved(id, job, unit, result)`. Unknown units get
systemd's `org.freedesktop.systemd1.NoSuchUnit` error.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from jeepney import DBusAddress, HeaderFields, MessageType, new_error, new_method_return, new_signal
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

from tests.e2e.harness import stop_process, wait_for_path

MANAGER = DBusAddress("/org/freedesktop/systemd1", interface="org.freedesktop.systemd1.Manager")


class DBusDaemon:
    """A private bus: `dbus-daemon --session` listening on a socket under `d`."""

    def __init__(self, d: Path) -> None:
        self.socket = d / "bus"
        self.log = d / "dbus.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address=unix:path={self.socket}"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_path(self.socket, self.proc, self.log)
        # The socket file appears at bind(), before listen(): a connect in between is refused.
        deadline = time.monotonic() + 15
        while True:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                try:
                    s.connect(str(self.socket))
                    break
                except ConnectionRefusedError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise
            time.sleep(0.02)

    @property
    def address(self) -> str:
        return f"unix:path={self.socket}"

    def stop(self) -> None:
        stop_process(self.proc)


class FakeSystemd:
    """Serves the Manager interface in a thread; `restart_unit(unit)` does the actual work."""

    def __init__(self, bus: DBusDaemon, units: dict[str, Callable[[], None]], result: str = "done") -> None:
        self.units = units
        self.result = result
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self.conn = open_dbus_connection(bus.address)
        reply = self.conn.send_and_get_reply(message_bus.RequestName("org.freedesktop.systemd1"), timeout=5)
        assert reply.body == (1,), f"could not own org.freedesktop.systemd1: {reply.body}"
        self._stop = threading.Event()
        self._jobs = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.conn.receive(timeout=0.1)
            except TimeoutError:
                continue
            if msg.header.message_type is not MessageType.method_call:
                continue
            member = msg.header.fields.get(HeaderFields.member)
            self.calls.append((str(member), tuple(msg.body)))
            if member == "Subscribe":
                self.conn.send(new_method_return(msg))
            elif member == "RestartUnit":
                unit, _mode = msg.body
                if unit not in self.units:
                    self.conn.send(new_error(msg, "org.freedesktop.systemd1.NoSuchUnit", "s", (f"Unit {unit} not found.",)))
                    continue
                self._jobs += 1
                job = f"/org/freedesktop/systemd1/job/{self._jobs}"
                self.conn.send(new_method_return(msg, "o", (job,)))
                self.units[unit]()
                self.conn.send(new_signal(MANAGER, "JobRemoved", "uoss", (self._jobs, job, unit, self.result)))
            else:
                self.conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod", "s", (f"Unknown method {member}",)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.conn.close()
