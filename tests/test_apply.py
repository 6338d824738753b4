"""Whole-tree tests of apply on a Debian-shaped node root: files before -> files after, exactly."""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from pathlib import Path

import pytest

from nodecfg.node.paths import NodePaths
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
    assert added == EXPECTED_FILES[example] | {f"{STATE}/state.json", f"{STATE}/lock", ORIGINAL}
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

    # A second apply writes nothing (but its name in the lock file), and diff says in sync.
    stamps = mtimes(root)
    rc, out, _ = run("apply", *node_args(root, config))
    assert rc == 0 and "in sync" in out
    lock = f"{STATE}/lock"
    assert {k: v for k, v in mtimes(root).items() if k != lock} == {k: v for k, v in stamps.items() if k != lock}
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
    # Refused before the lock is taken: not even the state dir or its lock file appear.
    assert tree(root) == before


def test_crash_after_journal_is_finished_by_the_next_run(root, tmp_path, monkeypatch):
    config = copy_example(tmp_path, "registries.yaml")
    paths = NodePaths(root=str(root))
    p = prepare(paths, str(config), "1.6.20")
    import nodecfg.node.apply as apply_mod

    calls = {"n": 0}
    real_replace = os.replace

    def crash_on_third(src, dst):
        if STATE not in src:  # the renames of node files, not of the journal or originals
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


def test_a_kill_while_staging_is_undone_dirs_included(root, tmp_path, monkeypatch):
    """Killed after staging created directories and temp files, before the commit (finding 5 of #13)."""
    config = copy_example(tmp_path, "registries.yaml")
    paths = NodePaths(root=str(root))
    before = tree(root)
    dirs_before = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}
    p = prepare(paths, str(config), "1.6.20")
    import nodecfg.node.apply as apply_mod

    real_write = apply_mod.write_journal

    def killed_at_commit(real_state, entry):
        if type(entry).__name__ == "Commit":
            raise KeyboardInterrupt("simulated kill")
        real_write(real_state, entry)

    monkeypatch.setattr(apply_mod, "write_journal", killed_at_commit)
    with pytest.raises(KeyboardInterrupt):
        apply(p)
    monkeypatch.undo()
    assert list(root.rglob("*.nodecfg-tmp")) and (root / CERTS / "harbor.corp.example").is_dir()
    assert recover_node(paths) == "undid the staging of an interrupted apply"
    assert not (root / STATE / "journal.json").exists()
    after = {k: v for k, v in tree(root).items() if not k.startswith(STATE)}
    assert after == before
    dirs_after = {
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir() and not str(p.relative_to(root)).startswith(STATE)
    }
    assert dirs_after == dirs_before | {"var", "var/lib"}  # the state dir's parents: a node has them


def test_a_failed_staging_removes_what_it_created(root, tmp_path, monkeypatch):
    config = copy_example(tmp_path, "registries.yaml")
    paths = NodePaths(root=str(root))
    before = tree(root)
    p = prepare(paths, str(config), "1.6.20")
    import nodecfg.node.apply as apply_mod

    real_write_temp = apply_mod.write_temp

    def disk_full_at_the_key(real, content, mode):
        if real.endswith("client.key"):
            raise apply_mod.NodeError(f"write {real}: No space left on device")
        return real_write_temp(real, content, mode)

    monkeypatch.setattr(apply_mod, "write_temp", disk_full_at_the_key)
    with pytest.raises(apply_mod.NodeError, match="No space left"):
        apply(p)
    assert not (root / CERTS).exists()
    assert not (root / STATE / "journal.json").exists()
    assert {k: v for k, v in tree(root).items() if not k.startswith(STATE)} == before


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
