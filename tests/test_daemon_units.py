"""The daemon's parts that need no containerd: metrics text, listen addresses, spread, lock, status."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import structlog

from nodecfg.daemon import Daemon, Options, spread_delay
from nodecfg.daemon.metrics import Metrics
from nodecfg.daemon.server import parse_listen
from nodecfg.node.apply import NodePaths
from nodecfg.node.inputs import watched_dirs
from nodecfg.node.lock import LockHeld, StateLock
from nodecfg.node.restart import NoRestart
from nodecfg.spec.models import Config
from tests.conftest import run

METRIC_LINE = re.compile(r'^[a-z_]+(\{[a-z]+="[a-z-]+"\})? -?[0-9.e+]+$')


def test_metrics_are_prometheus_text() -> None:
    m = Metrics()
    m.reconciled("ok", 0.25, error=False, now=1700000000.0)
    m.reconciled("invalid-input", 0.5, error=True, now=1700000001.0)
    m.restarts, m.rollbacks, m.restart_pending, m.owned_files = 2, 1, True, 7
    text = m.render()
    samples = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert all(METRIC_LINE.match(ln) for ln in samples), text
    assert 'nodecfg_reconciles_total{result="ok"} 1' in samples
    assert 'nodecfg_reconciles_total{result="invalid-input"} 1' in samples
    assert "nodecfg_reconcile_errors_total 1" in samples
    assert "nodecfg_reconcile_duration_seconds_sum 0.75" in samples
    assert "nodecfg_reconcile_duration_seconds_count 2" in samples
    assert "nodecfg_last_success_timestamp_seconds 1700000000" in samples
    assert "nodecfg_restart_pending 1" in samples and "nodecfg_owned_files 7" in samples
    # Every sample has HELP and TYPE lines for its family.
    for name in {ln.split("{")[0].split(" ")[0].removesuffix("_sum").removesuffix("_count") for ln in samples}:
        assert f"# TYPE {name} " in text


def test_listen_addresses() -> None:
    assert parse_listen(":9808") == ("0.0.0.0", 9808)
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:9808") == ("::1", 9808)
    assert parse_listen("none") is None
    for bad in ("9808", "host:", "host:99999", "host:http"):
        with pytest.raises(ValueError, match="--listen"):
            parse_listen(bad)


def test_spread_is_stable_per_node_and_within_bounds() -> None:
    delays = [spread_delay(f"node-{i}", 600) for i in range(200)]
    assert all(0 <= d < 600 for d in delays)
    assert spread_delay("node-1", 600) == spread_delay("node-1", 600)
    assert len({round(d) for d in delays}) > 100  # spread out, not bunched
    assert spread_delay("node-1", 0) == 0


def test_lock_names_its_holder(tmp_path: Path) -> None:
    held = rf"is held by pid {os.getpid()} .*nodecfg run on n1.*--wait"
    with StateLock(str(tmp_path), "nodecfg run on n1"), pytest.raises(LockHeld, match=held), StateLock(str(tmp_path), "second"):
        pass
    with StateLock(str(tmp_path), "second"):  # free again
        pass
    assert (tmp_path / "lock").read_text() == ""  # a free lock names nobody


def test_watched_dirs_cover_the_input_and_what_it_references(tmp_path: Path) -> None:
    (tmp_path / "cm").mkdir()
    (tmp_path / "secret").mkdir()
    (tmp_path / "cm" / "sub").mkdir()
    config = Config.model_validate(
        {
            "version": 1,
            "registries": {"r.example": {"caFile": str(tmp_path / "secret" / "ca.pem")}},
            "credentials": [{"registry": "r.example", "username": "u", "passwordFile": "sub/pw"}],
        }
    )
    dirs = watched_dirs(str(tmp_path / "cm" / "registries.yaml"), config)
    assert dirs == [str(tmp_path / "cm"), str(tmp_path / "secret")]  # cm/sub is inside cm


def test_status_without_a_daemon_says_so(tmp_path: Path) -> None:
    rc, _out, err = run("status", "--root", str(tmp_path))
    assert rc == 2 and "has `nodecfg run` run on this node?" in err


def test_status_prints_the_last_reconcile(tmp_path: Path) -> None:
    state = tmp_path / "var/lib/nodecfg"
    state.mkdir(parents=True)
    status = {
        "node": "n1",
        "pid": 42,
        "ready": False,
        "reason": "rolled back",
        "restartPending": False,
        "restartPolicy": "auto",
        "restartMethod": "systemd",
        "badInputs": {"abc": {"time": "2026-11-22T00:00:00Z", "reason": "not ready"}},
        "last": {
            "result": "ok",
            "trigger": "change",
            "class": "cold",
            "restart": "rolled-back",
            "duration_s": 1.5,
            "changed": ["write:/etc/containerd/config.toml"],
        },
        "updated": 0,
    }
    (state / "status.json").write_text(json.dumps(status))
    rc, out, _err = run("status", "--root", str(tmp_path))
    assert rc == 1
    assert "ready:           no: rolled back" in out
    assert "write:/etc/containerd/config.toml" in out
    assert "rolled back:     input abc" in out
    rc, out, _err = run("status", "--root", str(tmp_path), "-o", "json")
    assert json.loads(out)["badInputs"]["abc"]["reason"] == "not ready"


def test_run_refuses_bad_options(tmp_path: Path) -> None:
    rc, _out, err = run("run", "--root", str(tmp_path), "--listen", "nope")
    assert rc == 2 and "--listen" in err
    rc, _out, err = run("run", "--root", str(tmp_path), "--resync", "soon")
    assert rc == 2 and "duration" in err
    rc, _out, err = run("run", "--root", str(tmp_path), "--restart-method", "command")
    assert rc == 2 and "--restart-command" in err
    rc, _out, err = run(
        "uninstall", "--root", str(tmp_path), "--restart-method", "command", "--restart-command", "systemctl 'restart"
    )
    assert rc == 2 and "--restart-command" in err and "quotation" in err


def test_cli_defaults_agree_with_the_modules_that_use_them() -> None:
    # cli.py keeps copies so the one-shot commands need not import grpc and jeepney.
    from nodecfg import cli
    from nodecfg.node import cri, restart

    assert cli.DEFAULT_SOCKET == cri.DEFAULT_SOCKET
    assert cli.DEFAULT_SYSTEM_BUS == restart.DEFAULT_SYSTEM_BUS
    assert cli.DEFAULT_UNIT == restart.DEFAULT_UNIT


def test_misspelled_secret_field_never_reaches_log_status_or_readyz(root: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("version: 1\ncredentials:\n  - {registry: r.example, username: u, passwordFile: /pw, Password: hunter2}\n")
    paths = NodePaths(
        root=str(root),
        containerd_config="/etc/containerd/config.toml",
        hosts_dir="/etc/containerd/certs.d",
        state_dir="/var/lib/nodecfg",
        containerd_socket="/run/containerd/containerd.sock",
    )
    daemon = Daemon(
        Options(paths=paths, config_path=str(config), containerd_version="1.6.20", restarter=NoRestart(), node_name="n")
    )
    with structlog.testing.capture_logs() as logs:
        daemon.reconcile("start")
    status_text = run("status", "--root", str(root))[1]
    status_file = (root / "var/lib/nodecfg/status.json").read_text()
    everything = json.dumps(logs) + status_file + status_text + daemon.readyz().reason + daemon.metrics.render()
    assert "hunter2" not in everything
    assert "credentials[0].Password: unknown field (check its spelling and case): <redacted>" in daemon.readyz().reason
    assert "credentials[0].Password: unknown field" in status_text
