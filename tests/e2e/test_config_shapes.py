"""config.toml as nodes ship it: a leftover table, a drop-in, a version 1 file; real pulls decide.

Each node starts with an admin's old hosts directory that sends Docker Hub to the lab's
`upstream` registry, named by a table or a file that containerd may read instead of the one
nodecfg edits. nodecfg's mirror is `plain`. The image id of a CRI pull says which
`config_path` containerd really runs with, so "applied" can only pass when the mirror serves it.
Where a release cannot read what nodecfg would write, nodecfg must refuse (exit 2, the file and
the fix) and leave config.toml as it was.
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import goarch, run_nodecfg
from tests.e2e.lab import Lab, Node, open_node
from tests.e2e.releases import V2_0, Release

HUB_MIRROR = """
version: 1
registries:
  docker.io:
    mirrors: ["http://{}"]
"""
OLD = 'plugins."io.containerd.grpc.v1.cri"'
IMAGE = "docker.io/library/hello:1"


def old_hosts_dir(node: Node, lab: Lab) -> Path:
    """An admin's earlier hosts directory: Docker Hub from the lab's `upstream` registry."""
    d = node.d / "old-certs.d"
    (d / "docker.io").mkdir(parents=True, exist_ok=True)
    (d / "docker.io" / "hosts.toml").write_text(
        f'server = "http://{lab.upstream.host}"\n[host."http://{lab.upstream.host}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    return d


def refused(node: Node) -> str:
    """`nodecfg apply` must refuse and change nothing; its error output."""
    before = node.containerd.config.read_bytes()
    r = run_nodecfg("apply", *node.nodecfg_args())
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert node.containerd.config.read_bytes() == before
    return r.stderr


def test_a_leftover_registry_table_is_moved_and_uninstall_puts_it_back(lab: Lab, release: Release) -> None:
    """A version 3 file with the version 2 registry table left in it: 2.3+ read the leftover, not
    the table nodecfg edits (before nodecfg moved it, 2.3.4 pulled from `upstream`)."""
    shape = "v3" if release.version >= V2_0 else "v2"
    with open_node(lab, shape) as node:
        cd = node.containerd
        leftover = f'[{OLD}.registry]\n  config_path = "{old_hosts_dir(node, lab)}"\n'
        if release.version < V2_0:
            # 1.x does not read a version 3 file's tables (1.7 refuses the file): nodecfg says so.
            cd.config.write_text(cd.base_config(leftover).replace("version = 2", "version = 3", 1))
            node.write_input(HUB_MIRROR.format(lab.plain.host))
            assert "version = 3 is only read by containerd >= 2.0" in refused(node)
            return
        cd.config.write_text(cd.base_config(leftover))
        original = cd.config.read_bytes()
        cd.restart()
        if release.reads_leftover_registry_table:  # the node before nodecfg: the leftover wins
            with cd.cri() as c:
                c.remove(IMAGE)
                assert c.pull(IMAGE) == lab.image("upstream", "library/hello:1").id
        else:  # 2.0-2.2 read the images table, which has no config_path (a pull would go to Docker Hub)
            assert node.loaded_config_path() in (None, "")

        report = node.converge(HUB_MIRROR.format(lab.plain.host))
        assert report["restartRequired"]
        assert any("is left from version 2" in w for w in report["warnings"])
        assert f"{OLD}.registry]" not in cd.config.read_text()
        assert node.pull(IMAGE) == lab.image("plain", "library/hello:1").id

        r = run_nodecfg("uninstall", "--restart-method", "none", *node.nodecfg_args())
        assert r.returncode == 0, r.stderr
        assert cd.config.read_bytes() == original


def test_a_drop_in_that_overrides_the_registry_is_named_and_nothing_is_written(node: Node, lab: Lab, release: Release) -> None:
    """`imports` with a drop-in that sets its own config_path wins over config.toml on every
    release: nodecfg refuses, naming the drop-in. Once the drop-in holds other settings only, the
    edit takes effect, except on 1.x for a drop-in that names the CRI plugin at all (1.x replaces
    the whole plugin table with the drop-in's)."""
    cd = node.containerd
    conf_d = node.d / "conf.d"
    conf_d.mkdir()
    drop_in = conf_d / "10-registry.toml"
    version = f"version = {cd.shape[1:]}\n"
    table = cd.registry_table
    drop_in.write_text(version + f'[{table}]\n  config_path = "{old_hosts_dir(node, lab)}"\n')
    main = cd.base_config().replace("\n", f'\nimports = ["{conf_d}/*.toml"]\n', 1)
    cd.config.write_text(main)
    cd.restart()
    node.write_input(HUB_MIRROR.format(lab.plain.host))
    error = refused(node)
    assert str(drop_in) in error and f"settings out of {drop_in}" in error

    doctor = run_nodecfg("doctor", "--no-network", "--containerd-socket", cd.socket, *node.nodecfg_args())
    assert doctor.returncode == 1
    assert f"{drop_in}, which {cd.config} imports, overrides its registry settings" in doctor.stdout

    # The drop-in now sets only another CRI setting.
    plugin = table.rsplit(".registry", 1)[0]
    drop_in.write_text(version + f"[{plugin}]\n  max_concurrent_downloads = 3\n")
    if release.version < V2_0:
        assert str(drop_in) in refused(node)
        return
    node.converge()
    assert node.pull(IMAGE) == lab.image("plain", "library/hello:1").id


def _version_1_config(node: Node, release: Release) -> str:
    """A version 1 config.toml (no version line, short plugin names) for this test's containerd."""
    cd = node.containerd
    text = (
        f'root = "{cd.d}/root"\nstate = "{cd.d}/state"\n'
        f'[grpc]\n  address = "{cd.socket}"\n[ttrpc]\n  address = "{cd.socket}.ttrpc"\n'
        f'[plugins.opt]\n  path = "{cd.d}/opt"\n[plugins.cri.containerd]\n  snapshotter = "native"\n'
    )
    if release.version >= V2_0:  # as Containerd.base_config, for 2.x's images plugin and transfer service
        text += (
            '[plugins."io.containerd.cri.v1.images"]\n  snapshotter = "native"\n'
            f'[[plugins."io.containerd.transfer.v1.local".unpack_config]]\n  platform = "linux/{goarch()}"\n'
            '  snapshotter = "native"\n'
        )
    return text


def test_a_version_1_file_is_edited_where_the_release_reads_it(lab: Lab, release: Release) -> None:
    """1.x and 2.3+ read a version 1 file's `plugins.cri` registry table; 2.0-2.2 drop it, so
    nodecfg refuses there (before this, it refused on 2.3 too)."""
    with open_node(lab) as node:
        cd = node.containerd
        cd.config.write_text(
            _version_1_config(node, release) + f'[plugins.cri.registry]\n  config_path = "{old_hosts_dir(node, lab)}"\n'
        )
        cd.restart()
        node.write_input(HUB_MIRROR.format(lab.plain.host))
        if not release.reads_version_1_registry_table:
            assert "does not read the registry settings of such a file" in refused(node)
            return
        with cd.cri() as c:
            c.remove(IMAGE)
            assert c.pull(IMAGE) == lab.image("upstream", "library/hello:1").id  # the old hosts dir is read
        report = node.converge()
        assert report["restartRequired"]
        assert "[plugins.cri.registry]" in cd.config.read_text()
        assert node.pull(IMAGE) == lab.image("plain", "library/hello:1").id
