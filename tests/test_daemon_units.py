"""The daemon's parts that need no containerd: metrics, listen addresses, spread, lock, status."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
import structlog
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nodecfg import __version__
from nodecfg.containerd.versions import ContainerdTarget, ContainerdVersion, VersionSource
from nodecfg.daemon import spread_delay
from nodecfg.daemon.metrics import Metrics
from nodecfg.daemon.server import parse_listen
from nodecfg.node.inputs import watched_dirs
from nodecfg.node.lock import LockHeld, StateLock
from nodecfg.spec.loader import load_config
from nodecfg.spec.models import Config
from tests.conftest import run, unit_daemon

# Every name /metrics had before prometheus_client (dashboards and alerts use them), by type.
SERIES_BEFORE = {
    "nodecfg_reconciles": "counter",
    "nodecfg_reconcile_errors": "counter",
    "nodecfg_reconcile_duration_seconds": "summary",
    "nodecfg_restarts": "counter",
    "nodecfg_rollbacks": "counter",
    "nodecfg_last_success_timestamp_seconds": "gauge",
    "nodecfg_restart_pending": "gauge",
    "nodecfg_owned_files": "gauge",
    "nodecfg_ready": "gauge",
}
V1620 = ContainerdTarget(ContainerdVersion(1, 6, 20), VersionSource.RUNNING)


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What a Prometheus server would scrape: (name, labels) -> value, parsed from the text."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(m.render())
        for s in family.samples
    }


def value(m: Metrics, name: str, **labels: str) -> float:
    return samples(m)[(name, tuple(sorted(labels.items())))]


def info(m: Metrics) -> dict[str, str]:
    ((labels, v),) = [(dict(k[1]), v) for k, v in samples(m).items() if k[0] == "nodecfg_info"]
    assert v == 1
    return labels


def test_metrics_keep_their_names_types_and_values() -> None:
    m = Metrics()
    m.reconciled("ok", 0.25, error=False, now=1700000000.0)
    m.reconciled("invalid-input", 0.5, error=True, now=1700000001.0)
    m.restarts.inc()
    m.rolled_back()
    m.owned_files.set(7)
    m.node_state(ready=False, pending_since=1700000000.0)
    families = {f.name: f.type for f in text_string_to_metric_families(m.render())}
    assert {n: families.get(n) for n in SERIES_BEFORE} == SERIES_BEFORE
    assert value(m, "nodecfg_reconciles_total", result="ok") == 1
    assert value(m, "nodecfg_reconciles_total", result="invalid-input") == 1
    assert value(m, "nodecfg_reconciles_total", result="bad-input") == 0  # there before it happens
    assert value(m, "nodecfg_reconcile_errors_total") == 1
    assert value(m, "nodecfg_reconcile_duration_seconds_sum") == 0.75
    assert value(m, "nodecfg_reconcile_duration_seconds_count") == 2
    assert value(m, "nodecfg_last_success_timestamp_seconds") == 1700000000
    assert value(m, "nodecfg_restarts_total") == 2 and value(m, "nodecfg_rollbacks_total") == 1
    assert value(m, "nodecfg_restart_pending") == 1 and value(m, "nodecfg_owned_files") == 7
    assert value(m, "nodecfg_ready") == 0
    assert value(m, "nodecfg_last_reconcile_result", result="invalid-input") == 1
    assert value(m, "nodecfg_last_reconcile_result", result="ok") == 0
    assert not any(name.endswith("_created") for name, _labels in samples(m))
    assert value(m, "process_resident_memory_bytes") > 0


def test_each_daemon_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.restarts.inc()
    assert value(a, "nodecfg_restarts_total") == 1 and value(b, "nodecfg_restarts_total") == 0
    assert "nodecfg_restarts_total" not in generate_latest(REGISTRY).decode()  # not the global one


def test_a_new_metric_is_one_line() -> None:
    m = Metrics()
    up = m.gauge("nodecfg_mirror_up", "1 while the mirror answers.", "registry", "endpoint")
    latency = m.histogram("nodecfg_mirror_probe_seconds", "Probe latency.", "endpoint", buckets=(0.1, 1.0))
    up.labels("docker.io", "https://mirror.example").set(1)
    latency.labels("https://mirror.example").observe(0.5)
    assert value(m, "nodecfg_mirror_up", registry="docker.io", endpoint="https://mirror.example") == 1
    assert value(m, "nodecfg_mirror_probe_seconds_bucket", endpoint="https://mirror.example", le="1.0") == 1
    assert value(m, "nodecfg_mirror_probe_seconds_bucket", endpoint="https://mirror.example", le="0.1") == 0


def test_info_shows_the_applied_input_and_the_release() -> None:
    m = Metrics()
    assert info(m) == {"version": __version__, "containerd": "", "input_hash": ""}
    m.input_read("aaaa", V1620, now=100.0)
    assert info(m)["input_hash"] == ""  # read, not applied yet
    m.reconciled("ok", 0.1, error=False, now=101.0)
    assert info(m) == {"version": __version__, "containerd": "1.6.20", "input_hash": "aaaa"}
    assert value(m, "nodecfg_input_seen_timestamp_seconds", input_hash="aaaa") == 100
    # A new input that is refused: still applied "aaaa"; the node has seen "bbbb" (one series).
    m.input_read("bbbb", V1620, now=200.0)
    m.reconciled("invalid-input", 0.1, error=True, now=201.0)
    assert info(m)["input_hash"] == "aaaa"
    assert [k for k in samples(m) if k[0] == "nodecfg_input_seen_timestamp_seconds"] == [
        ("nodecfg_input_seen_timestamp_seconds", (("input_hash", "bbbb"),))
    ]
    assert value(m, "nodecfg_input_seen_timestamp_seconds", input_hash="bbbb") == 200
    # The same input read again keeps the time it was first seen.
    m.input_read("bbbb", V1620, now=300.0)
    assert value(m, "nodecfg_input_seen_timestamp_seconds", input_hash="bbbb") == 200


def test_a_rollback_returns_the_info_to_the_input_before_the_burst() -> None:
    m = Metrics()
    for digest, now in (("aaaa", 100.0), ("bbbb", 200.0)):
        m.input_read(digest, V1620, now=now)
        m.reconciled("ok", 0.1, error=False, now=now)
        m.node_state(ready=True, pending_since=None if digest == "aaaa" else now)
    m.input_read("cccc", V1620, now=300.0)  # a second cold change in the same burst
    m.reconciled("ok", 0.1, error=False, now=300.0)
    assert info(m)["input_hash"] == "cccc"
    m.rolled_back()
    m.node_state(ready=False, pending_since=None)
    assert info(m)["input_hash"] == "aaaa"  # containerd runs with the config.toml of before the burst


def test_restart_pending_seconds_counts_from_the_first_cold_write() -> None:
    m = Metrics()
    assert value(m, "nodecfg_restart_pending_seconds") == 0
    m.node_state(ready=True, pending_since=time.time() - 3600)
    assert 3600 <= value(m, "nodecfg_restart_pending_seconds") < 3600 + 600
    m.node_state(ready=True, pending_since=None)
    assert value(m, "nodecfg_restart_pending_seconds") == 0


def test_the_input_hash_is_the_same_for_the_same_input_in_any_layout() -> None:
    a = load_config("version: 1\nregistries:\n  docker.io:\n    mirrors: [{url: https://m.example}]\n")
    b = load_config("# a comment\nregistries: {docker.io: {mirrors: [{url: 'https://m.example'}]}}\nversion: 1\n")
    c = load_config("version: 1\nregistries:\n  docker.io:\n    mirrors: [{url: https://n.example}]\n")
    assert a.digest() == b.digest() != c.digest()
    assert re.fullmatch(r"[0-9a-f]{16}", a.digest())


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
    assert json.loads(out) == status  # the file as written: no key dropped, none made up (no "mirrors" here)
    (state / "status.json").write_text(json.dumps({**status, "fromANewerDaemon": {"x": 1}}))
    rc, out, _err = run("status", "--root", str(tmp_path), "-o", "json")
    assert json.loads(out)["fromANewerDaemon"] == {"x": 1}


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


def test_misspelled_secret_field_never_reaches_log_status_or_readyz(root: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("version: 1\ncredentials:\n  - {registry: r.example, username: u, passwordFile: /pw, Password: hunter2}\n")
    daemon = unit_daemon(root, config)
    with structlog.testing.capture_logs() as logs:
        daemon.sync_input("start")
    status_text = run("status", "--root", str(root))[1]
    status_file = (root / "var/lib/nodecfg/status.json").read_text()
    everything = json.dumps(logs) + status_file + status_text + daemon.readyz().reason + daemon.metrics.render()
    assert "hunter2" not in everything
    assert "credentials[0].Password: unknown field (check its spelling and case): <redacted>" in daemon.readyz().reason
    assert "credentials[0].Password: unknown field" in status_text
