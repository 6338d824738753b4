"""`nodecfg uninstall`: install -> apply -> uninstall returns the node byte for byte, whole tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import DEBIAN_CONFIG, run, tree
from tests.test_apply import EXPECTED_FILES, copy_example

CONFIG = "etc/containerd/config.toml"
LEGACY = (
    '\n[plugins."io.containerd.grpc.v1.cri".registry.mirrors."quay.io"]\n  endpoint = ["https://quay-mirror.example:5000"]\n'
    '[plugins."io.containerd.grpc.v1.cri".registry.configs."quay-mirror.example:5000".tls]\n  insecure_skip_verify = true\n'
)


def args(root: Path, config: Path) -> list[str]:
    return ["--root", str(root), "--config", str(config), "--containerd-version", "1.6.20"]


def uninstall(root: Path, config: Path, *extra: str) -> tuple[int, str, str]:
    return run("uninstall", *args(root, config), "--restart-method", "none", *extra)


@pytest.mark.parametrize("example", sorted(EXPECTED_FILES))
def test_apply_then_uninstall_gives_the_node_back(root: Path, tmp_path: Path, example: str) -> None:
    before = tree(root)
    config = copy_example(tmp_path, example)
    rc, _out, err = run("apply", *args(root, config))
    assert rc == 0, err
    assert tree(root) != before
    rc, out, err = uninstall(root, config)
    assert rc == 0, err
    assert tree(root) == before, out
    if (root / CONFIG).read_text() != DEBIAN_CONFIG or "config.toml" in out:
        assert "restart containerd" in out  # config.toml changed back: containerd must reload it


def test_legacy_settings_come_back_and_foreign_files_are_restored(root: Path, tmp_path: Path) -> None:
    (root / CONFIG).write_text(DEBIAN_CONFIG + LEGACY)
    theirs = root / "etc/containerd/certs.d/docker.io/hosts.toml"
    theirs.parent.mkdir(parents=True)
    theirs.write_text('server = "https://registry-1.docker.io"\n[host."https://their-mirror.example"]\n')
    before = tree(root)
    config = copy_example(tmp_path, "dockerhub-mirror.yaml")
    assert run("apply", *args(root, config))[0] == 0
    assert "mirrors" not in (root / CONFIG).read_text()
    assert "their-mirror" not in theirs.read_text()
    rc, _out, err = uninstall(root, config)
    assert rc == 0, err
    assert tree(root) == before


WITH_REGISTRY_TABLE = DEBIAN_CONFIG.replace(
    '      conf_dir = "/etc/cni/net.d"\n',
    '      conf_dir = "/etc/cni/net.d"\n  [plugins."io.containerd.grpc.v1.cri".registry]\n    config_path = ""\n',
)
USER_EDITS = {
    "a changed value": lambda t: t.replace('bin_dir = "/usr/lib/cni"', 'bin_dir = "/opt/cni/bin"'),
    "a comment at the end": lambda t: t + "\n# tuned by hand\n",
    "a table at the end": lambda t: t + '[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "zfs"\n',
    "a line at the top": lambda t: "# edited by hand\n" + t,
}


@pytest.mark.parametrize("edit", sorted(USER_EDITS))
@pytest.mark.parametrize("original", [DEBIAN_CONFIG, WITH_REGISTRY_TABLE], ids=["no-registry-table", "registry-table"])
@pytest.mark.parametrize("example", ["registries.yaml", "dockerhub-mirror.yaml"])
def test_edits_made_after_nodecfg_are_kept_and_nothing_else_stays(
    root: Path, tmp_path: Path, example: str, original: str, edit: str
) -> None:
    """Finding 9 of #13: the user's edit stays, nodecfg's tables go without a trace, the mode comes back."""
    cfg = root / CONFIG
    cfg.write_text(original)
    cfg.chmod(0o644)
    config = copy_example(tmp_path, example)
    assert run("apply", *args(root, config))[0] == 0
    assert cfg.stat().st_mode & 0o777 == (0o600 if example == "registries.yaml" else 0o644)
    cfg.write_text(USER_EDITS[edit](cfg.read_text()))
    rc, _out, err = uninstall(root, config)
    assert rc == 0, err
    assert "changed after nodecfg's last write" in err
    assert cfg.read_text() == USER_EDITS[edit](original)  # byte for byte: no blank line left behind
    assert cfg.stat().st_mode & 0o777 == 0o644
    assert not (root / "var/lib/nodecfg").exists()
    assert not (root / "etc/containerd/certs.d").exists()


def test_credentials_the_user_added_keep_the_file_closed(root: Path, tmp_path: Path) -> None:
    cfg = root / CONFIG
    cfg.chmod(0o644)
    config = copy_example(tmp_path, "registries.yaml")
    assert run("apply", *args(root, config))[0] == 0
    mine = '  [plugins."io.containerd.grpc.v1.cri".registry.configs."mine.example".auth]\n    password = "theirs"\n'
    cfg.write_text(cfg.read_text() + mine)
    rc, _out, err = uninstall(root, config)
    assert rc == 0, err
    assert 'password = "theirs"' in cfg.read_text() and "example-harbor-password" not in cfg.read_text()
    assert cfg.stat().st_mode & 0o777 == 0o600


def test_edited_legacy_file_needs_force_original(root: Path, tmp_path: Path) -> None:
    (root / CONFIG).write_text(DEBIAN_CONFIG + LEGACY)
    config = copy_example(tmp_path, "dockerhub-mirror.yaml")
    assert run("apply", *args(root, config))[0] == 0
    cfg = root / CONFIG
    cfg.write_text(cfg.read_text().replace('bin_dir = "/usr/lib/cni"', 'bin_dir = "/opt/cni/bin"'))
    rc, _out, err = uninstall(root, config)
    assert rc == 0, err
    # The legacy mirrors and tls settings are back next to the admin's edit; config_path is gone.
    text = cfg.read_text()
    assert 'mirrors."quay.io"' in text and "insecure_skip_verify = true" in text
    assert "config_path" not in text and 'bin_dir = "/opt/cni/bin"' in text


def test_dry_run_and_nothing_installed(root: Path, tmp_path: Path) -> None:
    config = copy_example(tmp_path, "registries.yaml")
    assert run("apply", *args(root, config))[0] == 0
    after_apply = tree(root)
    rc, out, _err = uninstall(root, config, "--dry-run")
    assert rc == 0 and "dry run" in out and "delete /etc/containerd/certs.d/docker.io/hosts.toml" in out
    assert tree(root) == after_apply
    assert uninstall(root, config)[0] == 0
    clean = tree(root)
    rc, out, _err = uninstall(root, config)
    assert rc == 0 and "0 change(s)" in out
    assert tree(root) == clean
