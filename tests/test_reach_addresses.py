"""Probes try a name's addresses as containerd's dialer does, not only the first one."""

from __future__ import annotations

from pathlib import Path

from nodecfg.containerd.hosts_toml import HostEntry
from nodecfg.node.paths import NodePaths
from nodecfg.node.reach import Stage, dial_order, node_hosts, reach


def test_etc_hosts_gives_every_address_of_a_name_in_file_order(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/hosts").write_text("::1 m.test\n127.0.0.1 m.test other.test\n127.0.0.1 m.test  # again\n")
    assert node_hosts(NodePaths(root=str(tmp_path))) == {"m.test": ("::1", "127.0.0.1"), "other.test": ("127.0.0.1",)}


def test_dial_order_takes_the_first_family_first() -> None:
    assert dial_order(["::1", "10.0.0.1", "fd00::2", "10.0.0.2"]) == ["::1", "fd00::2", "10.0.0.1", "10.0.0.2"]
    assert dial_order(["10.0.0.1", "::1"]) == ["10.0.0.1", "::1"]


def test_a_mirror_that_listens_on_its_second_address_is_reached(tmp_path: Path, unavailable_server: str) -> None:
    """/etc/hosts with ::1 before 127.0.0.1 and a mirror on 127.0.0.1 only: containerd falls through
    to the second address; so must the probe (it used to give up on ::1 and route the mirror out)."""
    port = int(unavailable_server.rsplit(":", 1)[1])
    entry = HostEntry(key=f"http://m.test:{port}", scheme="http", host=f"m.test:{port}", path="/v2", capabilities=("pull",))
    r = reach(entry, {"m.test": ("::1", "127.0.0.1")}, NodePaths(root=str(tmp_path)), 3.0)
    assert (r.stage, r.status, r.address) == (Stage.ANSWERED, 503, "127.0.0.1")
