"""Whole-tree tests of apply on a Debian-shaped node root: files before -> files after, exactly."""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from pathlib import Path

import pytest

from nodecfg.node.apply import NodePaths
from nodecfg.node.reconcile import apply, prepare, recover_node
from tests.conftest import DEBIAN_CONFIG, EXAMPLES, mtimes, node_args, run, tree

CERTS = "etc/containerd/certs.d"
STATE = "var/lib/nodecfg"
ORIGINAL = f"{STATE}/originals/%2Fetc%2Fcontainerd%2Fconfig.toml"


def copy_example(tmp_path: Path, name: str) -> Path:
    """The example input with its secrets/ beside it (relative paths resolve from there)."""
    d = tmp_path / "input"
    if not d.exists():
        shutil.copytree(EXAMPLES / "secrets", d / "secrets")
    shutil.copy(EXAMPLES / name, d / name)
    return d / name


EXPECTED_FILES = {
    "dockerhub-mirror.yaml": {f"{CERTS}/docker.io/hosts.toml"},
    "plain-http.yaml": {f"{CERTS}/10.0.0.5:5000/hosts.toml"},
    "self-signed-ca.yaml": {f"{CERTS}/registry.corp.example/hosts.toml", f"{CERTS}/registry.corp.example/ca.pem"},
    "client-certificates.yaml": {
        f"{CERTS}/harbor.corp.example/{n}" for n in ("hosts.toml", "ca.pem", "client.cert", "client.key")
    },
    "pull-secret.yaml": {f"{CERTS}/registry.corp.example:5000/hosts.toml"},
    "mirror-everything.yaml": {f"{CERTS}/_default/hosts.toml"},
    "override-path.yaml": {f"{CERTS}/docker.io/hosts.toml"},
    "registries.yaml": {
        f"{CERTS}/{n}"
        for n in (
            "docker.io/hosts.toml",
            "10.0.0.5:5000/hosts.toml",
            "harbor.corp.example/hosts.toml",
            "harbor.corp.example/ca.pem",
            "harbor.corp.example/client.cert",
            "harbor.corp.example/client.key",
        )
    },
}


@pytest.mark.parametrize("example", sorted(EXPECTED_FILES))
def test_example_whole_tree(example, root, tmp_path):
    config = copy_example(tmp_path, example)
    before = tree(root)
    rc, out, err = run("apply", *node_args(root, config))
    assert rc == 0, err
    after = tree(root)
    added = set(after) - set(before)
    assert added == EXPECTED_FILES[example] | {f"{STATE}/state.json", ORIGINAL}
    assert set(before) - set(after) == set()
    # The only file changed in place is config.toml, and its original is kept byte for byte.
    changed = {p for p in before if before[p] != after[p]}
    assert changed == {"etc/containerd/config.toml"}
    assert after[ORIGINAL][1] == before["etc/containerd/config.toml"][1]
    for path, (mode, content) in after.items():
        if path.endswith("hosts.toml"):
            assert content.startswith(b"# Managed by nodecfg")
            tomllib.loads(content.decode())
        if path.endswith(".key"):
            assert mode == 0o600
    cfg = tomllib.loads(after["etc/containerd/config.toml"][1].decode())
    assert cfg["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["config_path"] == "/etc/containerd/certs.d"
    holds_auth = "credentials" in config.read_text()
    assert (after["etc/containerd/config.toml"][0] == 0o600) == holds_auth
    assert "restart required: yes" in out

    # A second apply writes nothing, and diff says in sync.
    stamps = mtimes(root)
    rc, out, _ = run("apply", *node_args(root, config))
    assert rc == 0 and "in sync" in out
    assert mtimes(root) == stamps
    rc, _, _ = run("diff", *node_args(root, config))
    assert rc == 0


def test_a_bearer_token_makes_hosts_toml_0600_and_its_removal_0644_again(root, tmp_path):
    config = tmp_path / "registries.yaml"
    hosts_toml = root / CERTS / "r.example/hosts.toml"
    for header, mode in (("Authorization: 'Bearer t0ken'", 0o600), ("X-Team: payments", 0o644)):
        config.write_text(f"version: 1\nregistries:\n  r.example:\n    headers: {{{header}}}\n")
        rc, _out, err = run("apply", *node_args(root, config))
        assert rc == 0, err
        assert (hosts_toml.stat().st_mode & 0o777, header.split(":")[0] in hosts_toml.read_text()) == (mode, True)


def test_removing_a_registry_removes_its_files_and_dirs_only(root, tmp_path):
    full = copy_example(tmp_path, "registries.yaml")
    foreign = root / CERTS / "mine.example"
    foreign.mkdir(parents=True)
    (foreign / "hosts.toml").write_text('server = "https://mine.example"\n[host]\n')
    assert run("apply", *node_args(root, full))[0] == 0
    smaller = tmp_path / "input" / "smaller.yaml"
    smaller.write_text("version: 1\nregistries:\n  docker.io:\n    mirrors: [https://mirror.corp.example]\n")
    rc, out, err = run("apply", *node_args(root, smaller))
    assert rc == 0, err
    files = tree(root)
    assert sorted(p for p in files if p.startswith(CERTS)) == [
        f"{CERTS}/docker.io/hosts.toml",
        f"{CERTS}/mine.example/hosts.toml",
    ]
    assert not (root / CERTS / "harbor.corp.example").exists()
    cfg = tomllib.loads(files["etc/containerd/config.toml"][1].decode())
    assert "configs" not in cfg["plugins"]["io.containerd.grpc.v1.cri"]["registry"]
    assert "delete /etc/containerd/certs.d/harbor.corp.example/hosts.toml (hot)" in out


def test_foreign_hosts_toml_is_replaced_only_with_its_original_kept(root, tmp_path):
    d = root / CERTS / "docker.io"
    d.mkdir(parents=True)
    (d / "hosts.toml").write_text('server = "https://hand-written.example"\n[host]\n')
    rc, _, err = run("apply", *node_args(root, copy_example(tmp_path, "dockerhub-mirror.yaml")))
    assert rc == 0
    assert "was not written by nodecfg" in err
    kept = root / STATE / "originals" / "%2Fetc%2Fcontainerd%2Fcerts.d%2Fdocker.io%2Fhosts.toml"
    assert kept.read_text() == 'server = "https://hand-written.example"\n[host]\n'


def test_legacy_mirrors_survive_migration_and_later_applies(root, tmp_path):
    (root / "etc/containerd/config.toml").write_text(
        DEBIAN_CONFIG
        + '\n[plugins."io.containerd.grpc.v1.cri".registry.mirrors."quay.io"]\n  endpoint = ["http://quay-mirror.example:5000"]\n'
    )
    config = copy_example(tmp_path, "dockerhub-mirror.yaml")
    assert run("apply", *node_args(root, config))[0] == 0
    quay = root / CERTS / "quay.io/hosts.toml"
    first = quay.read_text()
    assert 'host."http://quay-mirror.example:5000"' in first
    assert "mirrors" not in (root / "etc/containerd/config.toml").read_text()
    # The legacy settings are gone from config.toml now, yet the next apply keeps rendering them.
    rc, out, _ = run("apply", *node_args(root, config))
    assert rc == 0 and "in sync" in out
    assert quay.read_text() == first


def test_invalid_input_changes_nothing(root, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nregistries:\n  docker.io:\n    mirrors: [ftp://x]\n")
    before = tree(root)
    rc, _, err = run("apply", *node_args(root, bad))
    assert rc == 2
    assert "nothing was changed on the node" in err
    assert tree(root) == before


def test_crash_after_journal_is_finished_by_the_next_run(root, tmp_path, monkeypatch):
    config = copy_example(tmp_path, "registries.yaml")
    paths = NodePaths(root=str(root))
    p = prepare(paths, str(config), "1.6.20")
    import nodecfg.node.apply as apply_mod

    calls = {"n": 0}
    real_replace = os.replace

    def crash_on_third(src, dst):
        calls["n"] += 1
        if calls["n"] == 3 and src.endswith(".nodecfg-tmp"):
            raise KeyboardInterrupt("simulated crash")
        return real_replace(src, dst)

    monkeypatch.setattr(apply_mod.os, "replace", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        apply(p)
    monkeypatch.setattr(apply_mod.os, "replace", real_replace)
    assert (root / STATE / "journal.json").exists()
    assert recover_node(paths) == "finished an interrupted apply from its journal"
    assert not (root / STATE / "journal.json").exists()
    assert not list(root.rglob("*.nodecfg-tmp"))
    assert prepare(paths, str(config), "1.6.20").plan.operations == ()


def test_crash_before_journal_leaves_old_files_and_temp_files_are_cleaned(root, tmp_path, monkeypatch):
    config = copy_example(tmp_path, "registries.yaml")
    paths = NodePaths(root=str(root))
    before = tree(root)
    p = prepare(paths, str(config), "1.6.20")
    import nodecfg.node.apply as apply_mod

    def crash(*_a, **_k):
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(apply_mod, "atomic_write", lambda path, *a: crash() if path.endswith("journal.json") else None)
    with pytest.raises(KeyboardInterrupt):
        apply(p)
    monkeypatch.undo()
    assert "removed" in (recover_node(paths) or "")
    after = {k: v for k, v in tree(root).items() if not k.startswith(STATE)}
    assert after == before


def test_symlinked_config_is_written_through_and_stays_inside_the_root(root, tmp_path):
    real = root / "opt/ctd/config.toml"
    real.parent.mkdir(parents=True)
    shutil.move(root / "etc/containerd/config.toml", real)
    (root / "etc/containerd/config.toml").symlink_to("/opt/ctd/config.toml")  # absolute: host view
    assert run("apply", *node_args(root, copy_example(tmp_path, "plain-http.yaml")))[0] == 0
    assert (root / "etc/containerd/config.toml").is_symlink()
    assert "config_path" in real.read_text()


def test_state_never_holds_a_secret(root, tmp_path):
    config = copy_example(tmp_path, "registries.yaml")
    assert run("apply", *node_args(root, config))[0] == 0
    state = (root / STATE / "state.json").read_text()
    assert "example-harbor-password" not in state
    assert json.loads(state)["authHosts"] == ["harbor.corp.example", "registry.corp.example:5000"]
