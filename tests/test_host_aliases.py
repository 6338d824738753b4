"""hostAliases: nodecfg's block in the node's /etc/hosts; the rest of the file is never touched."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from nodecfg.render.etc_hosts import BEGIN, END, edit_hosts_file, strip_block
from nodecfg.spec.models import HostAlias
from tests.conftest import node_args, run

# As distros ship it, with a comment, IPv6 lines, a tab, and no newline at the end.
ORIGINAL = "127.0.0.1\tlocalhost\n127.0.1.1 node-1\n\n# The following lines are desirable for IPv6 capable hosts\n::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes"
ALIASES = """\
version: 1
hostAliases:
  - ip: 10.0.0.5
    hostnames: [harbor.corp.example, registry.corp.example]
  - ip: fd00::5
    hostnames: [mirror.corp.example]
"""


def setup(root: Path, tmp_path: Path, text: str = ALIASES) -> tuple[Path, Path]:
    hosts = root / "etc/hosts"
    hosts.write_text(ORIGINAL)
    config = tmp_path / "registries.yaml"
    # First converge without aliases (config_path lands in config.toml: a cold change of its own).
    config.write_text("version: 1\n")
    assert run("apply", *node_args(root, config))[0] == 0
    assert hosts.read_text() == ORIGINAL
    config.write_text(text)
    return hosts, config


def test_block_is_added_hot_and_the_rest_kept(root, tmp_path):
    hosts, config = setup(root, tmp_path)
    rc, out, _ = run("diff", "-o", "json", *node_args(root, config))
    report = json.loads(out)
    assert rc == 1 and not report["restartRequired"]
    (op,) = [o for o in report["operations"] if o["path"] == "/etc/hosts"]
    assert op["class"] == "hot" and "+10.0.0.5\tharbor.corp.example registry.corp.example" in op["diff"]
    assert run("apply", *node_args(root, config))[0] == 0
    text = hosts.read_text()
    assert text.startswith(ORIGINAL + "\n" + BEGIN + "\n")
    assert "10.0.0.5\tharbor.corp.example registry.corp.example\nfd00::5\tmirror.corp.example\n" + END + "\n" in text
    assert run("diff", *node_args(root, config))[0] == 0


def test_block_is_replaced_in_place_and_removed_without_a_trace(root, tmp_path):
    hosts, config = setup(root, tmp_path)
    assert run("apply", *node_args(root, config))[0] == 0
    hosts.write_text(hosts.read_text() + "192.0.2.9 added-by-admin\n")  # after nodecfg's block
    config.write_text("version: 1\nhostAliases:\n  - {ip: 10.0.0.6, hostnames: [harbor.corp.example]}\n")
    assert run("apply", *node_args(root, config))[0] == 0
    text = hosts.read_text()
    assert "10.0.0.6\tharbor.corp.example\n" + END + "\n192.0.2.9 added-by-admin\n" in text
    assert "10.0.0.5" not in text
    config.write_text("version: 1\n")
    assert run("apply", *node_args(root, config))[0] == 0
    assert hosts.read_text() == ORIGINAL + "\n192.0.2.9 added-by-admin\n"


def test_uninstall_removes_the_block_only(root, tmp_path):
    hosts, config = setup(root, tmp_path)
    assert run("apply", *node_args(root, config))[0] == 0
    hosts.write_text("# admin was here\n" + hosts.read_text())
    rc, _, err = run("uninstall", "--restart-method", "none", *node_args(root, config))
    assert rc == 0, err
    assert hosts.read_text() == "# admin was here\n" + ORIGINAL  # no final newline, as before nodecfg


def test_damaged_markers_are_an_error_and_nothing_changes(root, tmp_path):
    hosts, config = setup(root, tmp_path)
    hosts.write_text(ORIGINAL + "\n" + BEGIN + "\n10.0.0.1 x\n")
    before = hosts.read_text()
    rc, _, err = run("apply", *node_args(root, config))
    assert rc == 2 and "block markers are damaged (1 BEGIN, 0 END)" in err
    assert hosts.read_text() == before


def test_invalid_alias_names_the_field_and_value(root, tmp_path):
    _, config = setup(root, tmp_path, "version: 1\nhostAliases:\n  - {ip: 10.0.0.300, hostnames: [a.example]}\n")
    rc, _, err = run("validate", *node_args(root, config))
    assert rc == 2 and "hostAliases[0].ip" in err and "10.0.0.300" in err


def test_a_bind_mounted_hosts_file_is_written_in_place(root, tmp_path, monkeypatch):
    # rename(2) onto a mount point fails with EBUSY (a container's bind-mounted /etc/hosts).
    hosts, config = setup(root, tmp_path)
    inode = hosts.stat().st_ino
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        if dst == str(hosts):
            raise OSError(errno.EBUSY, "Device or resource busy")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    assert run("apply", *node_args(root, config))[0] == 0
    assert hosts.stat().st_ino == inode and BEGIN in hosts.read_text()
    assert not list(hosts.parent.glob("*.nodecfg-tmp"))


@pytest.mark.parametrize("ip", ["10.0.0.5", "fd00::5"])
def test_no_hosts_file_at_all(root, tmp_path, ip):
    config = tmp_path / "registries.yaml"
    config.write_text(f"version: 1\nhostAliases:\n  - {{ip: '{ip}', hostnames: [h.example]}}\n")
    hosts = root / "etc/hosts"
    if hosts.exists():
        hosts.unlink()
    assert run("apply", *node_args(root, config))[0] == 0
    assert hosts.read_text() == f"{BEGIN}\n{ip}\th.example\n{END}\n"


@pytest.mark.parametrize("original", ["127.0.0.1 localhost", "127.0.0.1 localhost\n", "", "a\n\nb"])
def test_taking_the_block_out_gives_the_file_back_byte_for_byte(original: str) -> None:
    """Also a file without a final newline (class 13 of the second adversarial pass)."""
    one = [HostAlias(ip="10.0.0.5", hostnames=["r.example"])]
    two = [*one, HostAlias(ip="10.0.0.6", hostnames=["s.example"])]
    added = edit_hosts_file(original, one)
    assert added is not None and strip_block(added) == original
    changed = edit_hosts_file(added, two)  # replaced in place, still ends as the original did
    assert changed is not None and strip_block(changed) == original
    assert edit_hosts_file(changed, []) == original
