"""config.toml edits for version 3 and 4 files: the leftover version 2 registry table, and version 4.

A version 3 file may still hold `plugins."io.containerd.grpc.v1.cri".registry` from before its
migration: 2.0-2.2 ignore it, 2.3+ read it instead of the images table. nodecfg moves it (2.3+)
or removes it (2.0-2.2), and uninstall puts it back.
"""

from __future__ import annotations

import tomllib

import pytest

from nodecfg.containerd.effective import ConfigFile, effective_config
from nodecfg.containerd.errors import ConfigError
from nodecfg.containerd.versions import ContainerdVersion
from nodecfg.render.config_edit import remove_nodecfg_edits
from tests.test_containerd_config import AUTH, HOSTS, edit, is_subsequence, registry

R16, R20, R23 = (ContainerdVersion.parse(v) for v in ("1.6.20", "2.0.11", "2.3.4"))
OLD = 'plugins."io.containerd.grpc.v1.cri"'
NEW = 'plugins."io.containerd.cri.v1.images"'
IMAGES = ("plugins", "io.containerd.cri.v1.images", "registry")
DOCKER_AUTH = {"username": "bob", "password": 'p"w\\d$x'}
LEFTOVER = (
    "version = 3\n"
    f'[{NEW}.registry]\n  config_path = "/v3"\n'
    f'[{NEW}.registry.headers]\n  X-Src = ["v3"]\n'
    f'[{OLD}]\n  stream_idle_timeout = "4h"\n'
    f'[{OLD}.registry]\n  config_path = "/v2"\n'
    f'[{OLD}.registry.configs."r.example".auth]\n  username = "u-v2"\n'
)


def reads(text: str, release: ContainerdVersion):
    return effective_config([ConfigFile("config.toml", tomllib.loads(text))], release)


def uninstall(text: str, original: str, release: ContainerdVersion) -> str:
    return remove_nodecfg_edits(
        text, where="config.toml", original=original, owned_auth_hosts=frozenset(AUTH), moved_legacy=False, target=release
    )


def test_on_2_3_the_leftover_table_moves_into_the_images_table() -> None:
    assert reads(LEFTOVER, R23).config_path == "/v2"  # what 2.3 runs with before the edit
    e = edit(LEFTOVER, target=R23)
    plain = tomllib.loads(e.text)
    assert plain["version"] == 3
    assert plain["plugins"]["io.containerd.grpc.v1.cri"] == {"stream_idle_timeout": "4h"}
    assert registry(e.text, *IMAGES) == {
        "config_path": HOSTS,  # the leftover's /v2, replaced by nodecfg's
        "headers": {"X-Src": ["v3"]},
        "configs": {"r.example": {"auth": {"username": "u-v2"}}, "registry-1.docker.io": {"auth": DOCKER_AUTH}},
    }
    (moved,) = [w for w in e.warnings if "is left from version 2" in w]
    assert "reads it instead of" in moved and "(config_path, configs) are moved there" in moved
    assert "headers of [" in moved and "now take effect too" in moved
    after = reads(e.text, R23)
    assert after.config_path == HOSTS and after.auth("registry-1.docker.io") == DOCKER_AUTH
    assert after.auth("r.example") == {"username": "u-v2"}  # what 2.3 read from the leftover still holds


def test_on_2_0_the_leftover_table_is_only_removed() -> None:
    assert reads(LEFTOVER, R20).config_path == "/v3"  # 2.0 ignores the leftover
    e = edit(LEFTOVER, target=R20)
    plain = tomllib.loads(e.text)
    assert plain["plugins"]["io.containerd.grpc.v1.cri"] == {"stream_idle_timeout": "4h"}
    assert registry(e.text, *IMAGES) == {
        "config_path": f"{HOSTS}:/v3",
        "headers": {"X-Src": ["v3"]},
        "configs": {"registry-1.docker.io": {"auth": DOCKER_AUTH}},
    }
    (removed,) = [w for w in e.warnings if "is left from version 2" in w]
    assert "2.0.11 ignores it but 2.3+ would read it" in removed and removed.endswith("removed")
    # After an upgrade to 2.3, containerd reads what 2.0 read.
    assert reads(e.text, R23).registry == reads(e.text, R20).registry


def test_a_version_3_file_without_a_leftover_registry_keeps_its_old_plugin_table_as_it_is() -> None:
    src = f'version = 3\n[{OLD}]\n  stream_idle_timeout = "4h"\n[{NEW}.registry]\n  config_path = ""\n'
    e = edit(src, target=R23, auths={})
    assert e.text == src.replace('config_path = ""', f'config_path = "{HOSTS}"')
    assert not any("left from version 2" in w for w in e.warnings)


@pytest.mark.parametrize("release", [R23, R20], ids=str)
def test_uninstall_puts_the_leftover_back(release: ContainerdVersion) -> None:
    edited = edit(LEFTOVER, target=release).text
    assert tomllib.loads(uninstall(edited, LEFTOVER, release)) == tomllib.loads(LEFTOVER)


@pytest.mark.parametrize("release", [R23, R20], ids=str)
def test_uninstall_puts_the_leftover_back_into_a_file_edited_since(release: ContainerdVersion) -> None:
    edited = edit(LEFTOVER, target=release).text
    since = edited + '[plugins."io.containerd.runtime.v1.linux"]\n  shim_debug = true\n'
    want = tomllib.loads(LEFTOVER)
    want["plugins"]["io.containerd.runtime.v1.linux"] = {"shim_debug": True}
    assert tomllib.loads(uninstall(since, LEFTOVER, release)) == want


def test_uninstall_leaves_a_leftover_someone_put_back_alone() -> None:
    edited = edit(LEFTOVER, target=R23).text
    again = edited + f'[{OLD}.registry]\n  config_path = "/by-hand"\n'
    out = tomllib.loads(uninstall(again, LEFTOVER, R23))
    assert out["plugins"]["io.containerd.grpc.v1.cri"]["registry"] == {"config_path": "/by-hand"}


def test_a_version_4_file_stays_version_4_and_is_edited_in_the_images_table() -> None:
    src = f'version = 4\n[{NEW}.registry]\n  config_path = ""\n[{OLD}.registry]\n  config_path = "/v2"\n'
    e = edit(src, target=R23)
    plain = tomllib.loads(e.text)
    assert plain["version"] == 4
    assert registry(e.text, *IMAGES) == {"config_path": HOSTS, "configs": {"registry-1.docker.io": {"auth": DOCKER_AUTH}}}
    # 2.3 does not migrate a version 4 file: its old table is dead config, left as it is.
    assert plain["plugins"]["io.containerd.grpc.v1.cri"] == {"registry": {"config_path": "/v2"}}
    assert is_subsequence(src.replace('config_path = ""', f'config_path = "{HOSTS}"'), e.text)
    assert any("is not read for a version = 4 file by containerd 2.3.4" in w for w in e.warnings)
    assert reads(e.text, R23).config_path == HOSTS


def test_a_version_4_file_is_refused_for_2_0_and_1_x() -> None:
    src = f'version = 4\n[{NEW}.registry]\n  config_path = ""\n'
    with pytest.raises(ConfigError) as e:
        edit(src, target=R20)
    (problem,) = e.value.problems
    assert "version = 4 is only read by containerd >= 2.3.0" in problem
    assert "containerd 2.0.11 refuses to start with it" in problem and "nothing was written" in problem
    with pytest.raises(ConfigError, match=r"only read by containerd >= 2\.0"):
        edit(src, target=R16)


def test_uninstall_refuses_to_guess_where_a_moved_setting_changed_since_belongs() -> None:
    """A password rotated in the images table after the move: putting the leftover back as it was
    would revive the old one (2.3+ read the leftover), leaving it would lose the table: say so."""
    edited = edit(LEFTOVER, target=R23).text
    rotated = edited.replace('username = "u-v2"', 'username = "u-rotated"')
    assert rotated != edited
    with pytest.raises(ConfigError, match=r"configs of \[plugins\.\"io\.containerd\.cri\.v1\.images\"\.registry\] changed since"):
        uninstall(rotated, LEFTOVER, R23)
    # nodecfg's own config_path and credentials are not such a change.
    assert tomllib.loads(uninstall(edited, LEFTOVER, R23)) == tomllib.loads(LEFTOVER)
