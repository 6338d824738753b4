"""How containerd gets restarted: the host systemd over D-Bus, a command, or not at all."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jeepney import DBusAddress, MatchRule, MessageType, message_bus, new_method_call
from jeepney.io.blocking import open_dbus_connection
from jeepney.wrappers import DBusErrorResponse, unwrap_msg

from nodecfg.node.defaults import DEFAULT_SYSTEM_BUS, DEFAULT_UNIT
from nodecfg.node.fs import NodeError

SYSTEMD_BUS_NAME = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
SYSTEMD_MANAGER = "org.freedesktop.systemd1.Manager"
RESTART_TIMEOUT_S = 120.0  # the restart itself (systemd job or command); health has its own timeout
STOP_POLL_S = 0.25  # how often a restart in progress looks at `stop`

Stop = Callable[[], bool]


def _never() -> bool:
    return False


class RestartError(NodeError):
    """The restart could not be carried out (the method said so, or it timed out)."""


class RestartInterrupted(RestartError):
    """`stop()` became true while waiting for the restart.

    The restart was asked for and may still go on (systemd carries out its job; the command keeps
    running), but nodecfg no longer waits for it.
    """


@dataclass(frozen=True)
class NoRestart:
    """`none`: nodecfg never restarts containerd; a change that needs one stays pending."""

    name: str = "none"

    def restart(self, timeout: float, stop: Stop = _never) -> None:
        """Never called for a pending restart; refuse loudly if it is."""
        raise RestartError("restart method 'none' cannot restart containerd")


@dataclass(frozen=True)
class CommandRestart:
    """`command`: run an argv, e.g. `nsenter -t 1 -m -u -i -n -p -- systemctl restart containerd`."""

    argv: tuple[str, ...]
    name: str = "command"

    def restart(self, timeout: float, stop: Stop = _never) -> None:
        """Run the command; a non-zero exit or a timeout is a failed restart.

        On `stop()` the command is left to finish on its own (killing `systemctl restart` half-way
        would not stop the job, and killing a script half-way could leave containerd stopped).
        """
        deadline = time.monotonic() + timeout
        try:
            # Output to a file, not a pipe: a command left running must never block on a full pipe.
            with tempfile.TemporaryFile() as output:
                proc = subprocess.Popen(list(self.argv), stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                while True:
                    try:
                        rc = proc.wait(STOP_POLL_S)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                    if stop():
                        raise RestartInterrupted(
                            f"stopped waiting for the restart command (pid {proc.pid}): {' '.join(self.argv)}"
                        )
                    if time.monotonic() >= deadline:
                        proc.kill()
                        proc.wait()
                        raise RestartError(f"restart command timed out after {timeout:.0f}s: {' '.join(self.argv)}")
                output.seek(0)
                text = output.read()[-4000:].decode("utf-8", "replace")
        except OSError as e:
            raise RestartError(f"restart command could not run: {' '.join(self.argv)}: {e.strerror}") from None
        if rc != 0:
            tail = text.strip().splitlines()[-3:]
            raise RestartError(f"restart command exited {rc}: {' '.join(self.argv)}: {' / '.join(tail)}")


@dataclass(frozen=True)
class SystemdRestart:
    """`systemd`: Manager.RestartUnit on the host's systemd over D-Bus, then wait for the job.

    systemd answers RestartUnit with a job path at once; the restart is over when it broadcasts
    JobRemoved for that job (for a Type=notify unit like Debian's containerd, after READY=1).
    Subscribe() makes systemd send those signals to this connection.
    """

    bus_socket: str  # path of the system bus socket, as this process opens it
    unit: str = DEFAULT_UNIT
    name: str = "systemd"

    def restart(self, timeout: float, stop: Stop = _never) -> None:
        """Restart the unit and wait for its job to finish with result "done" (or `stop()`)."""
        deadline = time.monotonic() + timeout
        manager = DBusAddress(SYSTEMD_PATH, bus_name=SYSTEMD_BUS_NAME, interface=SYSTEMD_MANAGER)
        # The bus matches the well-known sender name; locally, messages carry systemd's unique
        # name, so the local filter leaves the sender out (the job path identifies our job).
        bus_rule = MatchRule(
            type="signal", sender=SYSTEMD_BUS_NAME, interface=SYSTEMD_MANAGER, member="JobRemoved", path=SYSTEMD_PATH
        )
        rule = MatchRule(type="signal", interface=SYSTEMD_MANAGER, member="JobRemoved", path=SYSTEMD_PATH)
        try:
            conn = open_dbus_connection(f"unix:path={self.bus_socket}")
        except (OSError, ConnectionError) as e:
            raise RestartError(f"cannot reach the host's D-Bus at {self.bus_socket}: {e}") from None
        try:
            with conn.filter(rule, bufsize=64) as signals:
                unwrap_msg(
                    conn.send_and_get_reply(new_method_call(message_bus, "AddMatch", "s", (bus_rule.serialise(),)), timeout=10)
                )
                unwrap_msg(conn.send_and_get_reply(new_method_call(manager, "Subscribe"), timeout=10))
                reply = conn.send_and_get_reply(new_method_call(manager, "RestartUnit", "ss", (self.unit, "replace")), timeout=30)
                (job,) = unwrap_msg(reply)
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise RestartError(f"systemd job {job} for {self.unit} did not finish within {timeout:.0f}s")
                    if stop():
                        raise RestartInterrupted(f"stopped waiting for systemd job {job} ({self.unit} restart goes on)")
                    try:
                        msg = conn.recv_until_filtered(signals, timeout=min(left, STOP_POLL_S))
                    except TimeoutError:
                        continue
                    if msg.header.message_type is not MessageType.signal:
                        continue
                    _id, removed_job, unit, result = msg.body
                    if removed_job == job:
                        if result != "done":
                            raise RestartError(f"systemd restart of {unit} ended with result {result!r}")
                        return
        except DBusErrorResponse as e:
            raise RestartError(f"systemd refused to restart {self.unit}: {e.name}: {' '.join(map(str, e.data))}") from None
        except TimeoutError:
            raise RestartError(f"systemd did not answer about {self.unit} within {timeout:.0f}s") from None
        finally:
            conn.close()


Restarter = NoRestart | CommandRestart | SystemdRestart


def make_restarter(
    method: str, *, command: Sequence[str] = (), bus_socket: str = DEFAULT_SYSTEM_BUS, unit: str = DEFAULT_UNIT
) -> Restarter:
    """The restarter for `--restart-method`; a `command` method needs a non-empty argv."""
    if method == "none":
        return NoRestart()
    if method == "command":
        if not command:
            raise NodeError("--restart-method command needs --restart-command (an argv, e.g. 'systemctl restart containerd')")
        return CommandRestart(tuple(command))
    if method == "systemd":
        return SystemdRestart(bus_socket, unit)
    raise NodeError(f"unknown restart method {method!r} (systemd, command, none)")
