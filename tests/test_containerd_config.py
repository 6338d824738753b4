"""config.toml editing across the layouts found in the wild: the registry part changes, nothing else."""

from __future__ import annotations

import tomllib

import pytest

from nodecfg.containerd.errors import ConfigError
from nodecfg.containerd.versions import ContainerdVersion
from nodecfg.render.config_edit import edit_containerd_config
from nodecfg.render.credentials import Auth
from nodecfg.render.materials import Secret
from tests.conftest import DEBIAN_CONFIG

HOSTS = "/etc/containerd/certs.d"
V16 = ContainerdVersion(1, 6, 20)
V20 = ContainerdVersion(2, 0, 0)
V22 = ContainerdVersion(2, 2, 0)
AUTH = {"registry-1.docker.io": Auth("bob", Secret('p"w\\d$x'))}


def edit(text, target=V16, auths=None, owned=frozenset()):
    return edit_containerd_config(
        text, where="config.toml", hosts_dir=HOSTS, auths=AUTH if auths is None else auths, owned_auth_hosts=owned, target=target
    )


def is_subsequence(original: str, edited: str) -> bool:
    """Every original line is still there, in order (nothing edited in place but the registry)."""
    it = iter(edited.splitlines())
    return all(any(line == e for e in it) for line in original.splitlines())


def registry(text, *path):
    cur = tomllib.loads(text)
    for p in path:
        cur = cur[p]
    return cur


def test_debian_shipped_config_gets_config_path_and_auth_and_keeps_everything():
    e = edit(DEBIAN_CONFIG)
    assert is_subsequence(DEBIAN_CONFIG, e.text)
    reg = registry(e.text, "plugins", "io.containerd.grpc.v1.cri", "registry")
    assert reg == {
        "config_path": HOSTS,
        "configs": {"registry-1.docker.io": {"auth": {"username": "bob", "password": 'p"w\\d$x'}}},
    }
    assert tomllib.loads(e.text)["plugins"]["io.containerd.grpc.v1.cri"]["cni"] == {
        "bin_dir": "/usr/lib/cni",
        "conf_dir": "/etc/cni/net.d",
    }
    assert e.holds_credentials


def test_no_file_gets_a_minimal_config_for_the_version():
    assert registry(edit("").text, "plugins", "io.containerd.grpc.v1.cri", "registry")["config_path"] == HOSTS
    assert tomllib.loads(edit("").text)["version"] == 2
    v3 = edit("", target=V20).text
    assert tomllib.loads(v3)["version"] == 3
    assert registry(v3, "plugins", "io.containerd.cri.v1.images", "registry")["config_path"] == HOSTS


def test_version_1_uses_plugins_cri():
    src = '[plugins.cri]\n  sandbox_image = "pause:3.9"\n[plugins.cri.registry]\n  config_path = ""\n'
    e = edit(src)
    assert registry(e.text, "plugins", "cri", "registry")["config_path"] == HOSTS
    assert "io.containerd.grpc.v1.cri" not in tomllib.loads(e.text)["plugins"]
    assert any("version 1 is deprecated" in w for w in e.warnings)


def test_version_3_uses_the_images_plugin_and_is_refused_for_1_x():
    src = 'version = 3\n[plugins."io.containerd.cri.v1.images"]\n  snapshotter = "overlayfs"\n'
    e = edit(src, target=V22)
    assert registry(e.text, "plugins", "io.containerd.cri.v1.images", "registry")["config_path"] == HOSTS
    assert is_subsequence(src, e.text)
    with pytest.raises(ConfigError, match=r"only read by containerd >= 2\.0"):
        edit(src, target=V16)


def test_v2_version_line_with_v3_tables_writes_where_containerd_reads():
    src = 'version = 2\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = "/elsewhere"\n'
    e = edit(src)
    assert registry(e.text, "plugins", "io.containerd.grpc.v1.cri", "registry")["config_path"] == HOSTS
    assert registry(e.text, "plugins", "io.containerd.cri.v1.images", "registry")["config_path"] == "/elsewhere"
    assert any("is not read for a version = 2 file" in w for w in e.warnings)


def test_single_quoted_keys_never_produce_a_duplicate_table():
    src = "version = 2\n[plugins.'io.containerd.grpc.v1.cri'.registry]\n  config_path = ''\n[plugins.'io.containerd.grpc.v1.cri'.registry.configs.'registry-1.docker.io'.auth]\n  username = 'old'\n"
    e = edit(src)
    assert e.text.count("registry]") == 1
    assert (
        registry(e.text, "plugins", "io.containerd.grpc.v1.cri", "registry", "configs", "registry-1.docker.io", "auth")[
            "username"
        ]
        == "bob"
    )
    assert any("did not write" in w for w in e.warnings)


def test_comments_and_spacing_survive():
    src = (
        "# top comment\nversion = 2   # trailing\n\n\n[plugins]\n  # inner\n"
        '  [plugins."io.containerd.grpc.v1.cri"]\n    sandbox_image = "pause:3.9"  # pinned\n'
        '    [plugins."io.containerd.grpc.v1.cri".registry]\n      config_path = ""   # set by hand\n'
        '  [plugins."io.containerd.runtime.v1.linux"]\n    shim_debug = false\n# end\n'
    )
    e = edit(src, auths={})
    assert e.text == src.replace('config_path = ""', f'config_path = "{HOSTS}"')


def test_legacy_mirrors_and_tls_are_moved_out():
    src = (
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = ""\n'
        '  [plugins."io.containerd.grpc.v1.cri".registry.mirrors]\n'
        '    [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n'
        '      endpoint = ["https://mirror.example", "https://registry-1.docker.io"]\n'
        '  [plugins."io.containerd.grpc.v1.cri".registry.configs."harbor.example".tls]\n'
        "    insecure_skip_verify = true\n"
        '  [plugins."io.containerd.grpc.v1.cri".registry.configs."harbor.example".auth]\n'
        '    username = "keep"\n    password = "me"\n'
    )
    e = edit(src, auths={})
    reg = registry(e.text, "plugins", "io.containerd.grpc.v1.cri", "registry")
    assert "mirrors" not in reg
    assert reg["configs"] == {"harbor.example": {"auth": {"username": "keep", "password": "me"}}}
    assert e.legacy.mirrors == {"docker.io": ("https://mirror.example", "https://registry-1.docker.io")}
    assert e.legacy.tls["harbor.example"].skip_verify is True


def test_colon_separated_config_path_is_kept_when_it_holds_the_hosts_dir():
    src = f'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "{HOSTS}:/etc/docker/certs.d"\n'
    e = edit(src, auths={})
    assert e.text == src
    assert any("is a list; kept" in w for w in e.warnings)
    # 2.1+ reads the list as one directory (transfer-service pulls): only the hosts dir stays.
    e21 = edit(src, target=ContainerdVersion(2, 1, 0), auths={})
    assert registry(e21.text, "plugins", "io.containerd.grpc.v1.cri", "registry")["config_path"] == HOSTS
    assert any("replaced by" in w and "one directory" in w for w in e21.warnings)


def test_colon_separated_config_path_without_the_hosts_dir():
    src = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/docker/certs.d"\n'
    assert (
        registry(edit(src, auths={}).text, "plugins", "io.containerd.grpc.v1.cri", "registry")["config_path"]
        == f"{HOSTS}:/etc/docker/certs.d"
    )
    e22 = edit(src, target=V22, auths={})
    assert registry(e22.text, "plugins", "io.containerd.grpc.v1.cri", "registry")["config_path"] == HOSTS
    # One other directory is not a list: the warning says to move its files, not that a list is read as one.
    assert [w for w in e22.warnings if "replaced by" in w] == [
        f"config.toml: config_path '/etc/docker/certs.d' replaced by '{HOSTS}', where nodecfg writes; move the hosts.toml "
        "files from /etc/docker/certs.d into it (containerd >= 2.1 pulling through the transfer service reads one directory)"
    ]


@pytest.mark.parametrize(
    "src",
    [
        "version = 2\n[plugins.'io.containerd.grpc.v1.cri']\n  registry.config_path = ''\n  sandbox_image = 'x'\n",
        'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nregistry = { config_path = "" }\n',
        "version = 2\nplugins.'io.containerd.grpc.v1.cri'.registry.mirrors.'docker.io'.endpoint = ['https://m.example']\n",
    ],
    ids=["dotted", "inline", "top-level-dotted"],
)
def test_dotted_and_inline_layouts(src):
    e = edit(src)
    reg = registry(e.text, "plugins", "io.containerd.grpc.v1.cri", "registry")
    assert reg["config_path"] == HOSTS
    assert reg["configs"]["registry-1.docker.io"]["auth"]["username"] == "bob"
    assert "mirrors" not in reg


def test_second_edit_is_a_no_op_and_stale_owned_auth_is_removed():
    first = edit(DEBIAN_CONFIG)
    assert edit(first.text).text == first.text
    removed = edit(first.text, auths={}, owned=frozenset({"registry-1.docker.io"}))
    assert (
        "configs" not in registry(removed.text, "plugins", "io.containerd.grpc.v1.cri", "registry")
        or not registry(removed.text, "plugins", "io.containerd.grpc.v1.cri", "registry")["configs"]
    )
    assert "bob" not in removed.text


def test_invalid_toml_is_an_error_naming_the_file():
    with pytest.raises(ConfigError, match=r"config.toml: not valid TOML"):
        edit("version = 2\n[plugins\n")


# Golden edits: new keys and tables take the indentation (and the blank lines) the file itself uses.
FLAT_V3 = """version = 3

[plugins."io.containerd.cri.v1.images"]
snapshotter = "overlayfs"

[plugins."io.containerd.cri.v1.runtime"]
enable_selinux = false
"""
TABS = (
    "version = 2\n[plugins]\n"
    '\t[plugins."io.containerd.grpc.v1.cri"]\n\t\tsandbox_image = "registry.k8s.io/pause:3.9"\n'
    '\t\t[plugins."io.containerd.grpc.v1.cri".containerd]\n\t\t\tsnapshotter = "overlayfs"\n'
    '\t\t[plugins."io.containerd.grpc.v1.cri".registry]\n\t\t\tconfig_path = ""\n'
)
CONFIG_DEFAULT = """version = 2

[plugins]

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.6"

    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = ""

      [plugins."io.containerd.grpc.v1.cri".registry.auths]

      [plugins."io.containerd.grpc.v1.cri".registry.configs]

      [plugins."io.containerd.grpc.v1.cri".registry.headers]

  [plugins."io.containerd.internal.v1.opt"]
    path = "/opt/containerd"
"""
GOLDEN = {
    # Debian's file: keys two spaces in from their table, each sub-table two more, no blank lines.
    "debian": (
        DEBIAN_CONFIG,
        V16,
        """version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "/etc/containerd/certs.d"
      [plugins."io.containerd.grpc.v1.cri".registry.configs."registry-1.docker.io".auth]
        username = "bob"
        password = "p\\"w\\\\d$x"
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
""",
    ),
    # No indentation at all, tables apart: stays flat, tables apart.
    "flat-v3": (
        FLAT_V3,
        V22,
        """version = 3

[plugins."io.containerd.cri.v1.images"]
snapshotter = "overlayfs"

[plugins."io.containerd.cri.v1.images".registry]
config_path = "/etc/containerd/certs.d"

[plugins."io.containerd.cri.v1.images".registry.configs."registry-1.docker.io".auth]
username = "bob"
password = "p\\"w\\\\d$x"

[plugins."io.containerd.cri.v1.runtime"]
enable_selinux = false
""",
    ),
    # Tabs: one more tab per level; config_path replaced where it is.
    "tabs": (
        TABS,
        V16,
        "version = 2\n[plugins]\n"
        '\t[plugins."io.containerd.grpc.v1.cri"]\n\t\tsandbox_image = "registry.k8s.io/pause:3.9"\n'
        '\t\t[plugins."io.containerd.grpc.v1.cri".containerd]\n\t\t\tsnapshotter = "overlayfs"\n'
        '\t\t[plugins."io.containerd.grpc.v1.cri".registry]\n\t\t\tconfig_path = "/etc/containerd/certs.d"\n'
        '\t\t\t[plugins."io.containerd.grpc.v1.cri".registry.configs."registry-1.docker.io".auth]\n'
        '\t\t\t\tusername = "bob"\n\t\t\t\tpassword = "p\\"w\\\\d$x"\n',
    ),
    # `containerd config default`'s layout: nested two by two, a blank line before every table.
    "config-default": (
        CONFIG_DEFAULT,
        V16,
        CONFIG_DEFAULT.replace('config_path = ""', f'config_path = "{HOSTS}"').replace(
            '      [plugins."io.containerd.grpc.v1.cri".registry.configs]\n',
            '      [plugins."io.containerd.grpc.v1.cri".registry.configs]\n\n'
            '        [plugins."io.containerd.grpc.v1.cri".registry.configs."registry-1.docker.io".auth]\n'
            '          username = "bob"\n          password = "p\\"w\\\\d$x"\n',
        ),
    ),
}


@pytest.mark.parametrize("name", GOLDEN)
def test_edits_follow_the_files_own_layout(name):
    src, target, expected = GOLDEN[name]
    e = edit(src, target=target)
    assert e.text == expected
    assert edit(e.text, target=target).text == e.text  # and a second edit changes nothing


def test_new_keys_take_the_indentation_of_the_tables_keys_and_new_tables_their_siblings():
    src = (
        "version = 2\n"
        '[plugins."io.containerd.grpc.v1.cri".registry]\n    config_path = ""\n'
        '[plugins."io.containerd.grpc.v1.cri".registry.configs."registry-1.docker.io".auth]\n    username = "old"\n'
        '[plugins."io.containerd.grpc.v1.cri".registry.configs."registry-1.docker.io".tls]\n    ca_file = "/ca.pem"\n'
    )
    auths = {**AUTH, "mirror.example": Auth("m", Secret("pw")), "other.example": Auth("o", Secret("pw"))}
    e = edit(src, auths=auths)
    assert e.text == (
        "version = 2\n"
        f'[plugins."io.containerd.grpc.v1.cri".registry]\n    config_path = "{HOSTS}"\n'
        '[plugins."io.containerd.grpc.v1.cri".registry.configs."registry-1.docker.io".auth]\n'
        '    username = "bob"\n    password = "p\\"w\\\\d$x"\n'
        '[plugins."io.containerd.grpc.v1.cri".registry.configs."mirror.example".auth]\n'
        '    username = "m"\n    password = "pw"\n'
        '[plugins."io.containerd.grpc.v1.cri".registry.configs."other.example".auth]\n'
        '    username = "o"\n    password = "pw"\n'
    )
    assert e.legacy.tls["registry-1.docker.io"].ca_file == "/ca.pem"  # moved to hosts.toml


def test_an_edit_that_would_mean_something_else_is_refused(monkeypatch):
    # The double check: the tomlkit edit must parse (tomllib) to exactly the intended tree.
    import nodecfg.render.toml_ops as cc

    monkeypatch.setattr(cc, "_tk_apply", lambda *args, **kwargs: None)  # an editor that loses the change
    with pytest.raises(ConfigError, match="could not edit this file without changing other settings"):
        edit(DEBIAN_CONFIG)
