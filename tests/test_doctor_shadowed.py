"""`nodecfg doctor`: config.shadowed fails when containerd does not read config.toml's registry table as written.

Either an imported file overrides it, or (2.3+) a version 3 file's leftover version 2 table wins.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import run
from tests.test_doctor import OFFLINE, by_id, doctor
from tests.test_explain import make_node

OLD = 'plugins."io.containerd.grpc.v1.cri"'
NEW = 'plugins."io.containerd.cri.v1.images"'
HOSTS = "/etc/containerd/certs.d"
DROP = "/etc/containerd/conf.d/10.toml"
PASSWORD = "Node-Pa55word-3"
IMPORTS = 'imports = ["/etc/containerd/conf.d/*.toml"]\n'


def auth(table: str, user: str, password: str = PASSWORD) -> str:
    return f'[{table}.registry.configs."reg.example".auth]\n  username = "{user}"\n  password = "{password}"\n'


def with_drop_in(tmp_path: Path, config: str, drop_in: str) -> Path:
    node = make_node(tmp_path, config)
    (node / "etc/containerd/conf.d").mkdir()
    (node / DROP.lstrip("/")).write_text(drop_in)
    return node


def shadowed(node: Path, version: str) -> tuple[int, list[dict[str, str]], str]:
    rc, r = doctor(node, *OFFLINE, version=version)
    rc_text, text, _ = run("doctor", "--root", str(node), "--containerd-version", version, *OFFLINE)
    assert rc_text == rc and PASSWORD not in text
    checks = by_id(r, "config.shadowed")
    assert all(c["status"] == "fail" for c in checks)
    return rc, checks, text


def test_a_drop_in_overriding_config_path_fails(tmp_path: Path) -> None:
    config = f'version = 2\n{IMPORTS}[{OLD}.registry]\n  config_path = "{HOSTS}"\n'
    node = with_drop_in(tmp_path, config, f'version = 2\n[{OLD}.registry]\n  config_path = "/elsewhere"\n')
    rc, (c,), text = shadowed(node, "2.0.11")
    assert rc == 1
    assert c["detail"].startswith(f"{DROP}, which /etc/containerd/config.toml imports, overrides its registry settings")
    assert "config_path '/elsewhere', not '/etc/containerd/certs.d'" in c["detail"]
    assert "[FAIL] containerd does not read config.toml's registry table as written" in text and DROP in text


def test_a_drop_in_overriding_credentials_alone_fails(tmp_path: Path) -> None:
    config = f'version = 3\n{IMPORTS}[{NEW}.registry]\n  config_path = "{HOSTS}"\n' + auth(NEW, "main")
    node = with_drop_in(tmp_path, config, "version = 3\n" + auth(NEW, "drop", "other-Pa55word"))
    rc, (c,), _ = shadowed(node, "2.3.4")
    assert rc == 1 and by_id(doctor(node, *OFFLINE, version="2.3.4")[1], "config.config_path")[0]["status"] == "ok"
    assert c["detail"] == f"{DROP}, which /etc/containerd/config.toml imports, overrides the credentials for reg.example"


def test_a_drop_in_that_leaves_the_registry_alone_passes(tmp_path: Path) -> None:
    config = f'version = 2\n{IMPORTS}[{OLD}.registry]\n  config_path = "{HOSTS}"\n'
    node = with_drop_in(tmp_path, config, f'version = 2\n[{OLD}]\n  sandbox_image = "pause:drop"\n')
    rc, checks, _ = shadowed(node, "2.0.11")
    assert rc == 0 and checks == []
    # 1.x replaces the whole CRI plugin table with the drop-in's: config_path is gone.
    rc, (c,), _ = shadowed(node, "1.6.20")
    assert rc == 1 and c["detail"].startswith(f"{DROP}, which") and "config_path none" in c["detail"]


LEFTOVER = f'version = 3\n[{NEW}.registry]\n  config_path = "{HOSTS}"\n[{OLD}.registry]\n  config_path = "/v2"\n'


def test_a_leftover_table_fails_on_2_3(tmp_path: Path) -> None:
    rc, (c,), text = shadowed(make_node(tmp_path, LEFTOVER), "2.3.4")
    assert rc == 1
    assert c["detail"].startswith(f"/etc/containerd/config.toml: [{OLD}.registry] is left from version 2")
    assert (
        "containerd 2.3.4 reads it instead of" in c["detail"]
        and "config_path '/v2', not '/etc/containerd/certs.d'" in c["detail"]
    )
    assert "`nodecfg apply` moves it" in c["detail"] and "[FAIL]" in text


def test_a_leftover_table_is_not_read_on_2_0(tmp_path: Path) -> None:
    rc, checks, _ = shadowed(make_node(tmp_path, LEFTOVER), "2.0.11")
    assert rc == 0 and checks == []


def test_a_leftover_table_that_drops_the_credentials_fails_on_2_3(tmp_path: Path) -> None:
    config = f'version = 3\n[{NEW}.registry]\n  config_path = "{HOSTS}"\n' + auth(NEW, "main")
    config += f'[{OLD}.registry]\n  config_path = "{HOSTS}"\n'  # the same config_path, no credentials
    rc, (c,), _ = shadowed(make_node(tmp_path, config), "2.3.4")
    assert rc == 1
    assert f"[{OLD}.registry] is left from version 2" in c["detail"]
    assert "(not its credentials for reg.example)" in c["detail"] and "config_path" not in c["detail"]


def test_a_drop_in_readable_by_others_with_credentials_is_named_not_config_toml(tmp_path: Path) -> None:
    config = f'version = 3\n{IMPORTS}[{NEW}.registry]\n  config_path = "{HOSTS}"\n'
    node = with_drop_in(tmp_path, config, "version = 3\n" + auth(NEW, "drop"))
    (node / "etc/containerd/config.toml").chmod(0o644)
    (node / DROP.lstrip("/")).chmod(0o644)
    _rc, r = doctor(node, *OFFLINE, version="2.3.4")
    assert [c["title"].split(" holds")[0] for c in by_id(r, "perm.config")] == [DROP]
    (node / DROP.lstrip("/")).chmod(0o600)
    assert by_id(doctor(node, *OFFLINE, version="2.3.4")[1], "perm.config") == []


def test_a_drop_in_nodecfg_cannot_read_is_a_failure_in_the_checklist(tmp_path: Path) -> None:
    node = with_drop_in(tmp_path, f'version = 2\n{IMPORTS}[{OLD}.registry]\n  config_path = "{HOSTS}"\n', "")
    (node / DROP.lstrip("/")).unlink()
    os.mkfifo(node / DROP.lstrip("/"))
    rc, r = doctor(node, *OFFLINE, version="2.0.11")
    assert rc == 1
    assert any(DROP in c["detail"] and "FIFO" in c["detail"] for c in by_id(r, "config.invalid"))
