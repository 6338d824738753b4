"""The restart state machine (nodecfg.daemon.restarts) driven with a fake containerd and a fake restarter.

The fake containerd is healthy unless config.toml holds BROKEN; a restart by the fake restarter
gives it a new pid (unless told not to) and makes it read config.toml afresh. No containerd, no
systemd, no sleeps: settle and timeouts are zero or tiny.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nodecfg.daemon import Daemon
from nodecfg.daemon.files import BAD_INPUTS_FILE, GOOD_CONFIG_FILE, PENDING_FILE, Pending, StateFiles
from nodecfg.daemon.restarts import Restarts
from nodecfg.node.cri import Health
from nodecfg.node.paths import NodePaths
from nodecfg.node.reach import Stage
from nodecfg.node.restart import NoRestart
from nodecfg.node.status import BadInput, DaemonStatus, MirrorStatus, read_status
from tests.conftest import node_args, run, unit_daemon

GOOD = b"version = 2\n# good\n"
NEW = b"version = 2\n# new\n"
BROKEN = b"version = 2\n# BROKEN\n"


class FakeContainerd:
    """A containerd that runs as `pid` and is ready unless the config.toml it last read holds BROKEN."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.pid, self.started = 100, 1000.0
        self.loaded = config.read_bytes()
        self.during_wait: Callable[[], None] | None = None
        self.waits = 0

    def reload(self) -> None:
        self.loaded = self.config.read_bytes() if self.config.exists() else b""

    def health(self) -> Health:
        if b"BROKEN" in self.loaded:
            return Health(False, ("CRI plugin failed to load",))
        return Health(True, (), runtime="containerd 1.7.0")

    def wait_healthy(self, timeout: float, good: Callable[[Health], bool], stop: Callable[[], bool]) -> Health:
        self.waits += 1
        if self.during_wait is not None:
            self.during_wait()
        return self.health()  # one poll: good, or as it stands at the deadline

    def running(self) -> tuple[int, float] | None:
        return (self.pid, self.started)

    def not_loaded(self, h: Health, *, restarted: bool) -> str | None:
        return None if h.ready else h.describe()


@dataclass
class FakeRestarter:
    """Restarts the fake containerd: a new process (or, with new_process False, the same one) reading config.toml."""

    containerd: FakeContainerd
    new_process: bool = True
    calls: list[bytes] = field(default_factory=list)  # config.toml at each restart
    name: str = "fake"

    def restart(self, timeout: float, stop: Callable[[], bool]) -> None:
        self.calls.append(self.containerd.config.read_bytes() if self.containerd.config.exists() else b"")
        if self.new_process:
            self.containerd.pid += 1
            self.containerd.started += 1
            self.containerd.reload()


@dataclass
class Machine:
    paths: NodePaths
    config: Path
    state: Path
    containerd: FakeContainerd
    restarter: FakeRestarter
    restarts: Restarts
    reports: list[tuple[bool, str, str]]
    stop: list[bool]

    def cold_write(self, content: bytes, digest: str) -> None:
        """What the daemon's step does for a cold change: keep the good file, write, record."""
        self.restarts.before_cold_write(digest)
        self.config.write_bytes(content)
        self.restarts.after_cold_write(digest)

    def pending_on_disk(self) -> dict[str, object] | None:
        p = self.state / PENDING_FILE
        return json.loads(p.read_text()) if p.exists() else None

    def bad_on_disk(self) -> dict[str, dict[str, str]]:
        p = self.state / BAD_INPUTS_FILE
        return json.loads(p.read_text()) if p.exists() else {}


def machine(tmp_path: Path, *, new_process: bool = True) -> Machine:
    """A fresh state machine over a node root whose config.toml is GOOD."""
    root = tmp_path / "node"
    (root / "etc/containerd").mkdir(parents=True)
    (root / "var/lib/nodecfg").mkdir(parents=True)
    config = root / "etc/containerd/config.toml"
    config.write_bytes(GOOD)
    paths = NodePaths(root=str(root))
    containerd = FakeContainerd(config)
    restarter = FakeRestarter(containerd, new_process=new_process)
    reports: list[tuple[bool, str, str]] = []
    stop = [False]
    restarts = Restarts(
        paths,
        StateFiles(str(root / "var/lib/nodecfg")),
        containerd,
        restarter,
        node_name="n1",
        stop=lambda: stop[0],
        report=lambda ready, reason, outcome: reports.append((ready, reason, outcome)),
        settle_s=0.0,
        max_settle_s=0.0,
        restart_timeout_s=1.0,
    )
    restarts.configure("auto", 0.0, 0.1)
    return Machine(paths, config, root / "var/lib/nodecfg", containerd, restarter, restarts, reports, stop)


def test_a_cold_change_keeps_the_good_config_and_writes_the_pending_file_before_any_restart(tmp_path: Path) -> None:
    m = machine(tmp_path)
    m.cold_write(NEW, "aaaa")
    on_disk = m.pending_on_disk()
    assert on_disk is not None
    since = on_disk.pop("since")
    assert on_disk == {"inputHash": "aaaa", "goodExists": True, "containerd": [100, 1000.0]}
    assert (m.state / GOOD_CONFIG_FILE).read_bytes() == GOOD
    assert m.restarter.calls == []
    assert m.restarts.schedule() == "scheduled" and m.restarts.due() > 0
    # A second cold write in the same burst keeps the first good file and the burst's start.
    m.cold_write(BROKEN, "bbbb")
    assert (m.state / GOOD_CONFIG_FILE).read_bytes() == GOOD
    assert m.pending_on_disk() == {"inputHash": "bbbb", "goodExists": True, "containerd": [100, 1000.0], "since": since}


def test_healthy_after_the_restart_clears_the_pending_restart_and_keeps_the_new_config(tmp_path: Path) -> None:
    m = machine(tmp_path)
    m.cold_write(NEW, "aaaa")
    m.restarts.schedule()
    m.restarts.restart_now()
    assert m.restarter.calls == [NEW]
    assert m.config.read_bytes() == NEW
    assert m.restarts.pending is None and m.pending_on_disk() is None
    assert not (m.state / GOOD_CONFIG_FILE).exists()
    assert m.bad_on_disk() == {}
    assert m.reports == [(True, "input applied; containerd healthy", "done")]
    assert "nodecfg_restarts_total 1.0" in m.restarts.metrics.render()


def test_unhealthy_after_the_restart_rolls_back_to_the_good_config_and_marks_the_input_bad(tmp_path: Path) -> None:
    m = machine(tmp_path)
    m.cold_write(BROKEN, "bbbb")
    m.restarts.schedule()
    m.restarts.restart_now()
    assert m.restarter.calls == [BROKEN, GOOD]  # the restart, then the rollback's restart
    assert m.config.read_bytes() == GOOD
    assert m.bad_on_disk()["bbbb"]["reason"] == "not ready: CRI plugin failed to load"
    assert m.restarts.bad_input("bbbb") is not None and m.restarts.bad_input("aaaa") is None
    assert m.pending_on_disk() is None and not (m.state / GOOD_CONFIG_FILE).exists()
    [(ready, reason, outcome)] = m.reports
    assert not ready and outcome == "rolled-back"
    assert "containerd not ready: CRI plugin failed to load; this input will not be retried" in reason


def test_a_rollback_without_a_previous_config_removes_config_toml(tmp_path: Path) -> None:
    m = machine(tmp_path)
    m.config.unlink()
    m.cold_write(BROKEN, "bbbb")
    assert m.pending_on_disk() is not None and not (m.state / GOOD_CONFIG_FILE).exists()
    m.restarts.restart_now()
    assert not m.config.exists()
    assert "bbbb" in m.bad_on_disk()


def test_a_restart_that_leaves_the_same_containerd_running_is_a_failure(tmp_path: Path) -> None:
    m = machine(tmp_path, new_process=False)  # e.g. a wrong unit name: the command succeeds, nothing restarts
    m.cold_write(NEW, "aaaa")
    m.restarts.restart_now()
    why = "not ready: containerd was not restarted: pid 100 still serves the socket"
    assert m.bad_on_disk()["aaaa"]["reason"] == why
    assert m.config.read_bytes() == GOOD
    [(ready, reason, outcome)] = m.reports
    assert not ready and outcome == "rolled-back" and why in reason


def test_a_pending_restart_left_on_disk_is_carried_out_at_the_next_start(tmp_path: Path) -> None:
    m = machine(tmp_path)
    m.cold_write(NEW, "aaaa")  # ... and the daemon died before the restart
    fresh = machine_like(m)
    fresh.restarts.load()
    assert fresh.restarts.pending is not None and fresh.restarts.pending.input_hash == "aaaa"
    assert not fresh.restarts.rollback_interrupted()
    assert fresh.restarts.schedule() == "scheduled"
    fresh.restarts.restart_now()
    assert fresh.restarter.calls == [NEW]
    assert fresh.pending_on_disk() is None
    assert fresh.reports == [(True, "input applied; containerd healthy", "done")]


def test_a_pending_restart_someone_else_carried_out_is_only_checked(tmp_path: Path) -> None:
    m = machine(tmp_path)
    m.cold_write(NEW, "aaaa")
    m.containerd.pid, m.containerd.started = 555, 2000.0  # restarted by hand while no daemon ran
    m.containerd.reload()
    fresh = machine_like(m)
    fresh.restarts.load()
    fresh.restarts.schedule()
    fresh.restarts.restart_now()
    assert fresh.restarter.calls == []
    assert fresh.pending_on_disk() is None
    assert fresh.reports == [(True, "input applied; containerd healthy", "not-needed")]


def test_an_interrupted_rollback_is_finished_at_the_next_start(tmp_path: Path) -> None:
    m = machine(tmp_path)
    m.cold_write(BROKEN, "bbbb")
    # Killed right after recording the input as bad, before the good file was back.
    m.restarts.files.write_bad({"bbbb": BadInput("2026-12-01T00:00:00Z", "not ready")})
    fresh = machine_like(m)
    fresh.restarts.load()
    assert fresh.restarts.rollback_interrupted()
    fresh.restarts.finish_rollback()
    assert fresh.config.read_bytes() == GOOD
    assert fresh.restarter.calls == [GOOD]
    assert fresh.pending_on_disk() is None
    assert fresh.bad_on_disk()["bbbb"]["reason"] == "not ready: a rollback was interrupted"


def test_sigterm_during_the_health_wait_leaves_the_pending_restart_on_disk(tmp_path: Path) -> None:
    m = machine(tmp_path)
    m.cold_write(BROKEN, "bbbb")
    before = m.pending_on_disk()

    def sigterm() -> None:
        m.stop[0] = True

    m.containerd.during_wait = sigterm
    m.restarts.restart_now()
    assert m.restarter.calls == [BROKEN] and m.containerd.waits == 1
    assert m.pending_on_disk() == before
    assert (m.state / GOOD_CONFIG_FILE).read_bytes() == GOOD
    assert m.config.read_bytes() == BROKEN  # not rolled back: the next start checks it
    assert m.bad_on_disk() == {} and m.reports == []


def test_policy_never_leaves_the_restart_pending_until_someone_restarts_containerd(tmp_path: Path) -> None:
    m = machine(tmp_path)
    m.restarts.configure("never", 0.0, 0.1)
    m.cold_write(NEW, "aaaa")
    assert m.restarts.schedule() == "pending" and m.restarts.due() == 0
    assert m.pending_on_disk() is not None
    m.containerd.pid += 1
    assert m.restarts.schedule() == "none"
    assert m.pending_on_disk() is None and m.restarter.calls == []


def test_a_steady_stream_of_cold_changes_cannot_postpone_the_restart_past_max_settle(tmp_path: Path) -> None:
    m = machine(tmp_path)
    m.restarts.settle_s, m.restarts.max_settle_s = 100.0, 150.0
    m.cold_write(NEW, "aaaa")
    m.restarts.schedule()
    first = m.restarts.due()
    for _ in range(3):
        m.restarts.schedule()
    assert first < m.restarts.due() <= first + 150.0


def test_a_hot_only_change_never_asks_for_a_restart(root: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("version: 1\nregistries:\n  docker.io:\n    mirrors: [{url: 'https://a.example'}]\n")
    rc, _out, err = run("apply", *node_args(root, config))
    assert rc == 0, err
    config.write_text("version: 1\nregistries:\n  docker.io:\n    mirrors: [{url: 'https://b.example'}]\n")
    daemon: Daemon = unit_daemon(root, config)
    restarter = FakeRestarter(FakeContainerd(root / "etc/containerd/config.toml"))
    daemon.restarts.restarter = restarter
    daemon.sync_input("change")
    status = read_status(str(root / "var/lib/nodecfg"))
    assert status is not None
    assert status.last["class"] == "hot" and status.last["restart"] == "none"
    assert status.last["changed"] == ["write:/etc/containerd/certs.d/docker.io/hosts.toml"]
    assert "https://b.example" in (root / "etc/containerd/certs.d/docker.io/hosts.toml").read_text()
    assert not status.restart_pending and daemon.restarts.pending is None
    assert not (root / "var/lib/nodecfg" / PENDING_FILE).exists()
    assert restarter.calls == []


def test_a_cold_change_through_the_daemon_schedules_a_restart(root: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("version: 1\nregistries:\n  docker.io:\n    mirrors: [{url: 'https://a.example'}]\n")
    daemon: Daemon = unit_daemon(root, config)
    (root / "var/lib/nodecfg").mkdir(parents=True)
    daemon.restarts.restarter = FakeRestarter(FakeContainerd(root / "etc/containerd/config.toml"))
    daemon.sync_input("start")
    status = read_status(str(root / "var/lib/nodecfg"))
    assert status is not None and status.last["class"] == "cold" and status.last["restart"] == "scheduled"
    assert status.restart_pending and status.reason == "containerd restart scheduled for config.toml"
    pending = json.loads((root / "var/lib/nodecfg" / PENDING_FILE).read_text())
    assert pending["inputHash"] == status.last["input"]


def machine_like(m: Machine) -> Machine:
    """A new state machine (a restarted daemon) over the same node and the same containerd."""
    reports: list[tuple[bool, str, str]] = []
    restarter = FakeRestarter(m.containerd, new_process=m.restarter.new_process)
    restarts = Restarts(
        m.paths,
        StateFiles(str(m.state)),
        m.containerd,
        restarter,
        node_name="n1",
        stop=lambda: m.stop[0],
        report=lambda ready, reason, outcome: reports.append((ready, reason, outcome)),
        settle_s=0.0,
        max_settle_s=0.0,
        restart_timeout_s=1.0,
    )
    restarts.configure("auto", 0.0, 0.1)
    return Machine(m.paths, m.config, m.state, m.containerd, restarter, restarts, reports, m.stop)


# ---------------------------------------------------------------- the state files round-trip


def test_pending_round_trips_through_its_file_and_a_damaged_one_still_stands_for_a_restart(tmp_path: Path) -> None:
    files = StateFiles(str(tmp_path))
    assert files.read_pending() is None
    p = Pending("abcd", good_exists=False, containerd=(7, 12.5), since=99.0)
    files.write_pending(p)
    back = files.read_pending()
    assert back is not None and back.to_json() == p.to_json() and back.containerd == (7, 12.5)
    for damaged in ("{not json", '{"goodExists": true}', "[1, 2]"):
        (tmp_path / PENDING_FILE).write_text(damaged)
        unknown = files.read_pending()
        assert unknown is not None and unknown.containerd is None and unknown.input_hash == ""
        assert unknown.good_exists is False  # no good-config.toml beside it
    (tmp_path / GOOD_CONFIG_FILE).write_bytes(GOOD)
    again = files.read_pending()
    assert again is not None and again.good_exists is True


@pytest.mark.parametrize(("written", "restarted_with", "config_after"), [(NEW, [NEW], NEW), (BROKEN, [BROKEN, GOOD], GOOD)])
def test_a_damaged_pending_file_is_finished_not_forgotten(
    tmp_path: Path, written: bytes, restarted_with: list[bytes], config_after: bytes
) -> None:
    """The restart it stood for happens at the next start, and an unhealthy result still rolls back."""
    m = machine(tmp_path)
    m.cold_write(written, "aaaa")
    (m.state / PENDING_FILE).write_text('{"inputHash": "aaaa"}')  # damaged: goodExists is gone
    fresh = machine_like(m)
    fresh.restarts.load()
    assert fresh.restarts.schedule() == "scheduled"
    fresh.restarts.restart_now()
    assert fresh.restarter.calls == restarted_with
    assert fresh.config.read_bytes() == config_after
    assert fresh.pending_on_disk() is None
    assert "" not in fresh.bad_on_disk()  # an unknown input is not recorded as a bad one


def test_bad_inputs_round_trip_and_a_corrupt_file_reads_as_none(tmp_path: Path) -> None:
    files = StateFiles(str(tmp_path))
    assert files.read_bad() == {}
    bad = {"abcd": BadInput("2026-12-01T00:00:00Z", "not ready: x")}
    files.write_bad(bad)
    assert json.loads((tmp_path / BAD_INPUTS_FILE).read_text()) == {
        "abcd": {"time": "2026-12-01T00:00:00Z", "reason": "not ready: x"}
    }
    assert files.read_bad() == bad
    (tmp_path / BAD_INPUTS_FILE).write_text("[")
    assert files.read_bad() == {}


def test_daemon_status_round_trips_with_the_keys_of_status_json(tmp_path: Path) -> None:
    status = DaemonStatus(
        node="n1",
        pid=42,
        ready=False,
        reason="rolled back",
        restart_pending=True,
        restart_policy="auto",
        restart_method="systemd",
        bad_inputs={"abc": BadInput("t", "r")},
        mirrors=(MirrorStatus("docker.io", "https://m.example", False, 5.0, "2 failed", "timeout", 2, False, Stage.NO_ANSWER),),
        last={"result": "ok", "trigger": "change"},
        updated=1.5,
    )
    StateFiles(str(tmp_path)).write_status(status)
    data = json.loads((tmp_path / "status.json").read_text())
    assert sorted(data) == [
        "badInputs",
        "last",
        "mirrors",
        "node",
        "pid",
        "ready",
        "reason",
        "restartMethod",
        "restartPending",
        "restartPolicy",
        "updated",
    ]
    assert sorted(data["mirrors"][0]) == [
        "failsInARow",
        "inHostsToml",
        "inRotation",
        "lastOutcome",
        "lastProbe",
        "reason",
        "registry",
        "since",
        "url",
    ]
    assert read_status(str(tmp_path)) == status
    assert DaemonStatus.from_json(status.to_json()).to_json() == data
    assert data["mirrors"][0]["lastOutcome"] == "no-answer"
    assert "left out of hosts.toml: 2 failed" in status.mirrors[0].note()


def test_unit_daemon_still_never_restarts(tmp_path: Path) -> None:
    """The conftest daemon keeps NoRestart: the tests that use it must never reach a restart."""
    assert isinstance(unit_daemon(tmp_path, tmp_path / "c.yaml").restarts.restarter, NoRestart)
