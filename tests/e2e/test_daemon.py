"""`nodecfg run` against real containerd 1.6: kubelet-style volume updates, restarts, rollback."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from nodecfg.node.cri import CRIError
from nodecfg.node.restart import CommandRestart, RestartError, SystemdRestart
from tests.e2e.conftest import AUTH_PASSWORD, AUTH_USER, Lab, Node
from tests.e2e.fake_systemd import DBusDaemon, FakeSystemd
from tests.e2e.lab import hub


def configured(node: Node, lab: Lab) -> None:
    """Start from a node where config_path is already in place (a later change can be hot)."""
    node.converge(hub(lab.plain.host))


def hosts_toml(node: Node, registry: str = "docker.io") -> str:
    p = node.hosts_dir / registry / "hosts.toml"
    return p.read_text() if p.exists() else ""


def test_hot_change_by_configmap_swap_is_used_by_the_next_pull_without_restart(node: Node, lab: Lab) -> None:
    configured(node, lab)
    vol, d = node.follow({"registries.yaml": hub(lab.plain.host)})
    pid = node.containerd.pid
    assert node.pull("docker.io/library/hello:1") == lab.image("plain", "library/hello:1").id

    vol.update({"registries.yaml": hub(lab.upstream.host)})
    d.wait_for("the new hosts.toml on disk", lambda: lab.upstream.host in hosts_toml(node), timeout=10)
    assert node.pull("docker.io/library/hello:1") == lab.image("upstream", "library/hello:1").id
    assert node.containerd.pid == pid
    d.wait_ready()
    assert d.metric("nodecfg_restarts_total") == 0
    reconciles = [e for e in d.events() if e.get("event") == "reconcile" and e.get("trigger") == "change"]
    assert reconciles and reconciles[-1]["class"] == "hot" and reconciles[-1]["restart"] == "none"
    assert "duration_s" in reconciles[-1]
    assert d.stop() == 0


def test_burst_of_cold_changes_restarts_containerd_once(node: Node, lab: Lab) -> None:
    configured(node, lab)
    ca = lab.pki.ca.read_text()
    base = f"""version: 1
registries:
  {lab.auth.host}:
    caFile: ca.pem
credentials:
  - registry: {lab.auth.host}
    username: {AUTH_USER}
    passwordFile: password
"""
    vol, d = node.follow({"registries.yaml": base, "ca.pem": ca, "password": "wrong-0"}, ready=False)
    d.wait_for("the first restart", lambda: d.metric("nodecfg_restarts_total") == 1)
    d.wait_ready()
    pid = node.containerd.pid
    # Five new credentials in a burst (the last one right); one restart must cover them all.
    for i in range(1, 5):
        vol.update({"registries.yaml": base, "ca.pem": ca, "password": f"wrong-{i}"})
        time.sleep(0.1)
    vol.update({"registries.yaml": base, "ca.pem": ca, "password": AUTH_PASSWORD})
    d.wait_for("a restart", lambda: node.containerd.pid != pid, timeout=30)
    d.wait_ready()
    time.sleep(2)  # longer than the settle time: a second restart would have happened by now
    assert d.metric("nodecfg_restarts_total") == 2
    assert d.metric("nodecfg_restart_pending") == 0
    assert node.pull(f"{lab.auth.host}/private/app:1") == lab.image("auth", "private/app:1").id
    assert AUTH_PASSWORD not in d.log.read_text()
    assert d.stop() == 0


def test_unhealthy_restart_is_rolled_back_and_not_retried(node: Node, lab: Lab) -> None:
    configured(node, lab)
    good = node.containerd.config.read_bytes()
    # The restart command starts containerd with a broken CRI config whenever config.toml holds
    # credentials for break.test: containerd runs, CRI does not.
    vol, d = node.follow({"registries.yaml": hub(lab.plain.host, "restart:\n  healthTimeout: 3s\n")}, break_on="break.test")
    vol.update(
        {
            "registries.yaml": hub(
                lab.plain.host,
                "restart:\n  healthTimeout: 3s\ncredentials:\n  - registry: break.test\n    username: u\n    passwordFile: pw\n",
            ),
            "pw": "break-password",
        }
    )
    d.wait_for("a rollback", lambda: d.metric("nodecfg_rollbacks_total") == 1, timeout=60)
    assert node.containerd.config.read_bytes() == good
    assert node.loaded_config_path() == str(node.hosts_dir)
    code, body = d.get("/readyz")
    assert code == 503 and "rolled back" in body
    restarts = d.metric("nodecfg_restarts_total")
    assert restarts == 2  # the bad restart and the one back
    # SIGHUP forces a resync: the same input must not be tried again.
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    # The resync refuses the rolled-back input (a "bad-input" reconcile) instead of applying it.
    d.wait_for("the resync", lambda: d.metric('nodecfg_reconciles_total{result="bad-input"}') >= 1, timeout=10)
    assert d.metric('nodecfg_last_reconcile_result{result="bad-input"}') == 1  # what the rollback alert reads
    time.sleep(1.5)
    assert d.metric("nodecfg_restarts_total") == restarts
    assert node.containerd.config.read_bytes() == good
    status = json.loads((node.d / "nodecfg-state" / "status.json").read_text())
    assert status["ready"] is False and status["badInputs"]
    rollbacks = [e for e in d.events() if e.get("event") == "rollback"]
    assert rollbacks and rollbacks[0]["level"] == "error"
    # A new input is tried again.
    vol.update({"registries.yaml": hub(lab.upstream.host, "restart:\n  healthTimeout: 3s\n")})
    d.wait_ready()
    assert node.pull("docker.io/library/hello:1") == lab.image("upstream", "library/hello:1").id
    assert "break-password" not in d.log.read_text()
    assert d.stop() == 0


def test_invalid_input_changes_nothing_and_the_next_valid_input_recovers(node: Node, lab: Lab) -> None:
    configured(node, lab)
    vol, d = node.follow({"registries.yaml": hub(lab.plain.host)})

    def snapshot() -> dict[str, bytes]:
        files = {str(p): p.read_bytes() for p in node.hosts_dir.rglob("*") if p.is_file()}
        files["config.toml"] = node.containerd.config.read_bytes()
        return files

    before = snapshot()
    vol.update(
        {"registries.yaml": "version: 1\nregistries:\n  docker.io:\n    mirrors:\n      - url: http://x\n        bogus: 1\n"}
    )
    d.wait_for("/readyz to fail", lambda: d.get("/readyz")[0] == 503, timeout=10)
    code, body = d.get("/readyz")
    assert code == 503
    assert "registries.yaml:6" in body and "bogus" in body, body
    assert snapshot() == before
    errors = [e for e in d.events() if e.get("event") == "reconcile" and e.get("level") == "error"]
    assert errors and "registries.yaml:6" in errors[-1]["error"]
    vol.update({"registries.yaml": hub(lab.upstream.host)})
    d.wait_ready()
    assert node.pull("docker.io/library/hello:1") == lab.image("upstream", "library/hello:1").id
    assert d.stop() == 0


def test_second_instance_names_the_holder_and_exits(node: Node, lab: Lab) -> None:
    _vol, first = node.follow({"registries.yaml": hub(lab.plain.host)})
    second = node.daemon()
    second.start()
    assert second.proc is not None
    assert second.proc.wait(30) == 2
    assert f"pid {first.proc.pid if first.proc else '?'}" in second.log.read_text()
    assert first.stop() == 0


@pytest.mark.parametrize(
    ("failpoint", "bad"),
    [
        ("after-good-kept", False),
        ("after-cold-write", False),
        ("after-restart", False),
        ("after-restart", True),
        ("after-bad-recorded", True),
        ("after-good-restored", True),
    ],
)
def test_killed_at_any_step_the_next_start_leaves_a_consistent_healthy_node(
    node: Node, lab: Lab, failpoint: str, bad: bool
) -> None:
    configured(node, lab)
    good = node.containerd.config.read_bytes()
    creds = "restart:\n  healthTimeout: 3s\ncredentials:\n  - registry: {}\n    username: u\n    passwordFile: pw\n"
    files = {"registries.yaml": hub(lab.plain.host, creds.format("break.test" if bad else "ok.test")), "pw": "pw-value"}
    _vol, first = node.follow(files, ready=False, break_on="break.test", env={"NODECFG_FAILPOINT": failpoint})
    assert first.proc is not None
    assert first.proc.wait(60) == -signal.SIGKILL, first.log.read_text()[-2000:]

    second = node.daemon(break_on="break.test")
    second.start()
    if bad:
        second.wait_for("the rollback to finish", lambda: "rolled back" in second.get("/readyz")[1], timeout=60)
        assert node.containerd.config.read_bytes() == good
    else:
        second.wait_ready()
        assert b"ok.test" in node.containerd.config.read_bytes()
    assert node.loaded_config_path() == str(node.hosts_dir)
    state = node.d / "nodecfg-state"
    assert not (state / "pending-restart.json").exists()
    leftovers = [p for p in (*node.hosts_dir.rglob("*"), *node.d.glob("*")) if "nodecfg-tmp" in p.name]
    assert not leftovers
    assert second.stop() == 0
    assert not any(p.name == "lock" and p.read_text() for p in state.iterdir())
    assert os.path.exists(node.containerd.socket)


@pytest.fixture
def bus(node: Node) -> Iterator[DBusDaemon]:
    b = DBusDaemon(node.d)
    yield b
    b.stop()


def test_systemd_method_restarts_containerd_over_dbus(node: Node, lab: Lab, bus: DBusDaemon) -> None:
    systemd = FakeSystemd(bus, {"containerd.service": node.containerd.restart})
    try:
        pid = node.containerd.pid
        # config_path is new: ready only after the restart.
        _vol, d = node.follow(
            {"registries.yaml": hub(lab.plain.host)}, method="systemd", extra=["--systemd-bus", str(bus.socket)]
        )
        assert node.containerd.pid != pid
        assert ("RestartUnit", ("containerd.service", "replace")) in systemd.calls
        assert ("Subscribe", ()) in systemd.calls
        assert d.metric("nodecfg_restarts_total") == 1
        assert node.pull("docker.io/library/hello:1") == lab.image("plain", "library/hello:1").id
        assert d.stop() == 0
    finally:
        systemd.stop()


def test_systemd_errors_are_reported(node: Node, bus: DBusDaemon) -> None:
    systemd = FakeSystemd(bus, {"containerd.service": lambda: None}, result="failed")
    try:
        with pytest.raises(RestartError, match=r"NoSuchUnit.*nope\.service"):
            SystemdRestart(str(bus.socket), "nope.service").restart(10)
        with pytest.raises(RestartError, match="result 'failed'"):
            SystemdRestart(str(bus.socket)).restart(10)
    finally:
        systemd.stop()
    with pytest.raises(RestartError, match="cannot reach the host's D-Bus"):
        SystemdRestart(str(node.d / "no-bus")).restart(10)


def test_command_method_failure_is_reported() -> None:
    with pytest.raises(RestartError, match="exited 3"):
        CommandRestart(("sh", "-c", "echo boom >&2; exit 3")).restart(10)
    with pytest.raises(RestartError, match="timed out"):
        CommandRestart(("sleep", "5")).restart(0.2)


def test_resync_restores_a_hand_edited_owned_file_and_leaves_others_alone(node: Node, lab: Lab) -> None:
    configured(node, lab)
    theirs = node.hosts_dir / "other.example" / "hosts.toml"
    theirs.parent.mkdir(parents=True)
    theirs.write_text('server = "https://other.example"\n[host]\n')
    _vol, d = node.follow({"registries.yaml": hub(lab.plain.host)}, extra=["--resync", "1s"])
    ours = node.hosts_dir / "docker.io" / "hosts.toml"
    rendered = ours.read_text()
    ours.write_text(rendered.replace(lab.plain.host, lab.upstream.host))
    theirs.write_text(theirs.read_text() + "# edited by the admin\n")

    def resync_writes() -> list[dict[str, Any]]:
        return [e for e in d.events() if e.get("event") == "reconcile" and e.get("trigger") == "resync" and e.get("changed")]

    d.wait_for("the owned file restored", lambda: ours.read_text() == rendered, timeout=10)
    # The reconcile line comes after its writes are done (rename, state file, journal), so it can
    # lag the file by tens of ms on a loaded machine: wait for it rather than read the log at once.
    d.wait_for("the resync's reconcile line", lambda: bool(resync_writes()), timeout=10)
    assert resync_writes()[0]["changed"] == [f"write:{ours}"]
    assert ours.read_text() == rendered
    assert theirs.read_text().endswith("# edited by the admin\n")
    assert d.stop() == 0


def test_policy_never_writes_config_and_leaves_the_restart_to_the_admin(node: Node, lab: Lab) -> None:
    configured(node, lab)
    pid = node.containerd.pid
    never = "restart:\n  policy: never\ncredentials:\n  - registry: never.test\n    username: u\n    passwordFile: pw\n"
    _vol, d = node.follow({"registries.yaml": hub(lab.plain.host, never), "pw": "pw"})
    # Ready (the files are applied) but the restart is pending, and nodecfg did not restart.
    assert b"never.test" in node.containerd.config.read_bytes()
    assert d.metric("nodecfg_restart_pending") == 1
    assert d.metric("nodecfg_restart_pending_seconds") > 0
    assert d.metric("nodecfg_restarts_total") == 0
    assert node.containerd.pid == pid
    code, body = d.get("/readyz")
    assert code == 200 and "restart pending" in body
    # The admin restarts containerd; the next resync sees it and clears the pending restart.
    node.containerd.restart()
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for("the pending restart to clear", lambda: d.metric("nodecfg_restart_pending") == 0, timeout=10)
    assert d.metric("nodecfg_restart_pending_seconds") == 0
    assert d.metric("nodecfg_restarts_total") == 0
    assert d.stop() == 0


def test_sigterm_while_waiting_for_an_unhealthy_restart_stops_at_once_and_the_next_start_rolls_back(node: Node, lab: Lab) -> None:
    configured(node, lab)
    good = node.containerd.config.read_bytes()
    creds = "credentials:\n  - registry: break.test\n    username: u\n    passwordFile: pw\n"
    slow = "restart:\n  healthTimeout: 120s\n"
    vol, d = node.follow({"registries.yaml": hub(lab.plain.host, slow)}, break_on="break.test")
    before = node.containerd.pid
    vol.update({"registries.yaml": hub(lab.plain.host, slow + creds), "pw": "break-password"})

    def broken_containerd_runs() -> bool:
        try:
            return node.containerd.pid != before and not node.containerd.serves_cri()
        except (CRIError, ValueError):
            return False  # between stop and start

    d.wait_for("the restart into a broken CRI", broken_containerd_runs, timeout=30)
    time.sleep(1)  # the daemon is in its 120 s health wait now
    asked = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - asked < 10, "SIGTERM must be honoured within 10 s (kubelet kills after 30 s)"
    stopping = [e for e in d.events() if e.get("event") == "restart" and "stopping" in e.get("detail", "")]
    assert stopping, d.log.read_text()[-2000:]
    state = node.d / "nodecfg-state"
    assert (state / "pending-restart.json").exists(), "the unfinished restart is left for the next start"

    # The next start (now with a short health timeout) finds containerd restarted with the change,
    # unhealthy: it rolls back and restarts once more.
    vol.update({"registries.yaml": hub(lab.plain.host, "restart:\n  healthTimeout: 3s\n" + creds), "pw": "break-password"})
    d2 = node.daemon(break_on="break.test")
    d2.start()
    d2.wait_for("the rollback", lambda: d2.metric("nodecfg_rollbacks_total") == 1, timeout=60)
    assert node.containerd.config.read_bytes() == good
    assert node.loaded_config_path() == str(node.hosts_dir)
    assert not (state / "pending-restart.json").exists()
    assert d2.stop() == 0
