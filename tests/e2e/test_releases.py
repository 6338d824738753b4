"""What differs between containerd releases, proven on the release this run of the suite is on.

Each test states the behaviour of every release as data (`tests/e2e/releases.py`) and checks
the running one: the release detection, a `config_path` list under 2.1+'s transfer-service pulls,
and credentials that send 2.1+ pulls back down the local path.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from nodecfg.node.cri import CRIClient, CRIError
from tests.e2e.conftest import AUTH_PASSWORD, AUTH_USER, Lab, Node
from tests.e2e.harness import run_nodecfg
from tests.e2e.releases import V2_0, Release

HTTPS_TO_HTTP = "server gave HTTP response to HTTPS client"


def _diff_target(node: Node, root: Path, socket: str) -> dict[str, object]:
    r = run_nodecfg(
        "diff", "-o", "json", "--root", str(root), "--config", str(node.input), "--containerd-socket", socket,
        "--state-dir", "/state",
    )  # fmt: skip
    assert r.returncode in (0, 1), r.stderr
    report: dict[str, object] = json.loads(r.stdout)
    return report


def test_the_release_is_the_running_one_then_the_binary_then_the_last_apply(node: Node, lab: Lab, release: Release) -> None:
    node.write_input(f"version: 1\nregistries:\n  {lab.plain.host}:\n    plainHTTP: true\n")
    # A node root holding the test containerd's socket (hard-linked: a symlink could not leave the
    # root) and a binary on disk that claims another release (an upgrade waiting for a restart).
    root = node.d / "noderoot"
    (root / "run").mkdir(parents=True)
    (root / "etc/containerd").mkdir(parents=True)
    os.link(node.containerd.socket, root / "run/c.sock")
    binary = root / "usr/bin/containerd"
    binary.parent.mkdir(parents=True)
    for on_disk in ("9.9.0", "1.6.0"):
        binary.write_text(f"#!/bin/sh\necho containerd github.com/containerd/containerd v{on_disk} fake\n")
        binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
        report = _diff_target(node, root, "/run/c.sock")
        lower = min(release.name, on_disk, key=lambda v: tuple(map(int, v.split("."))))
        source = "running containerd" if lower == release.name else "binary"
        assert report["target"] == {"containerd": lower, "source": source}
        assert any(f"containerd {release.name} is running but the binary on disk is {on_disk}" in w for w in report["warnings"])
    # No binary and no socket: what the last apply rendered for (recorded in state).
    binary.unlink()
    r = run_nodecfg(
        "apply", "--root", str(root), "--config", str(node.input), "--containerd-socket", "/run/c.sock",
        "--state-dir", "/state",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    os.unlink(root / "run/c.sock")
    assert _diff_target(node, root, "/run/c.sock")["target"] == {"containerd": release.name, "source": "last apply"}
    # Nothing at all: assumed, and said. The apply above wrote a config.toml for the release (a
    # version 3 file on 2.x, which means containerd >= 2.0 whatever else is assumed).
    os.unlink(root / "state/state.json")
    assumed = "2.0.0" if release.version >= V2_0 else "1.6.0"
    assert _diff_target(node, root, "/run/c.sock")["target"] == {"containerd": assumed, "source": "assumed"}


def test_a_config_path_list_is_made_one_directory_where_the_release_reads_a_list_as_one(
    node: Node, lab: Lab, release: Release
) -> None:
    up = lab.upstream.host
    ref = f"{up}/team/app:3"  # on the upstream and on the mirror, with different content
    cd = node.containerd
    # The 2.2 default shape: two roots. The admin's hosts.toml for the upstream is in the first.
    other = node.d / "docker-certs.d"
    own = node.hosts_dir / up
    own.mkdir(parents=True)
    (own / "hosts.toml").write_text(f'server = "http://{up}"\n[host."http://{lab.plain.host}"]\n')
    cd.config.write_text(cd.base_config(f'[{cd.registry_table}]\n  config_path = "{node.hosts_dir}:{other}"\n'))
    cd.restart()
    with cd.cri() as c:
        c.remove(ref)
        if release.splits_config_path_list:
            assert c.pull(ref) == lab.image("plain", "team/app:3").id  # each root read: the mirror served
        else:
            try:
                image = c.pull(ref)
            except CRIError as e:
                assert HTTPS_TO_HTTP in e.details  # the list as one directory: no hosts.toml, HTTPS
            else:
                raise AssertionError(f"the pull succeeded ({image}): the list was read as roots")

    report = node.converge(f"version: 1\nregistries:\n  {up}:\n    plainHTTP: true\n    mirrors: ['http://{lab.plain.host}']\n")
    loaded = node.loaded_config_path()
    if release.splits_config_path_list:
        assert loaded == f"{node.hosts_dir}:{other}"
        assert any("is a list; kept" in w for w in report["warnings"])
    else:
        assert report["restartRequired"]
        assert loaded == str(node.hosts_dir)
        assert any("reads a list as one directory" in w for w in report["warnings"])
    assert node.pull(ref) == lab.image("plain", "team/app:3").id


def test_credentials_in_config_toml_work_on_every_release(node: Node, lab: Lab, release: Release) -> None:
    """configs.*.auth is deprecated in 2.x and sends 2.1+ CRI pulls down the local pull path
    (docs/containerd.md); with credentials for one registry, pulls from the others (hosts.toml
    mirrors, plain HTTP) must keep working there too."""
    node.converge(
        f"""
        version: 1
        registries:
          docker.io:
            mirrors: ["http://{lab.plain.host}"]
          {lab.auth.host}:
            caFile: ca.pem
        credentials:
          - registry: {lab.auth.host}
            username: {AUTH_USER}
            passwordFile: password
        """,
        {"ca.pem": lab.pki.ca.read_text(), "password": AUTH_PASSWORD},
    )
    assert node.pull(f"{lab.auth.host}/private/app:1") == lab.image("auth", "private/app:1").id
    assert node.pull("docker.io/library/hello:1") == lab.image("plain", "library/hello:1").id
    with CRIClient(node.containerd.socket) as c:
        assert AUTH_PASSWORD not in repr(c.health())
    dumped = node.containerd.dump()["plugins"]
    images = dumped.get("io.containerd.cri.v1.images", {})
    # 2.x: the deprecated auth lands in the images plugin (migrated from a v2 file); 1.x has no such plugin.
    assert bool(images.get("registry", {}).get("configs", {}).get(lab.auth.host)) == (release.version >= V2_0)


def test_dial_timeout_and_referrers_are_rendered_only_for_releases_that_read_them(node: Node, lab: Lab, release: Release) -> None:
    """A key a release does not know (`dial_timeout` before 2.1) is ignored; an unknown capability
    (`referrers` before 2.2) makes the whole file invalid and the pull silently goes upstream.
    The pull's image id proves the mirror's hosts.toml was read on this release."""
    up = lab.upstream.host
    report = node.converge(f"""
        version: 1
        registries:
          {up}:
            plainHTTP: true
            mirrors:
              - url: http://{lab.plain.host}
                dialTimeout: 2s
                capabilities: [pull, resolve, referrers]
        """)
    text = (node.hosts_dir / up / "hosts.toml").read_text()
    assert ('dial_timeout = "2s"' in text) == release.honours_dial_timeout
    assert ("referrers" in text) == release.reads_referrers_capability
    assert any("'referrers' dropped" in w for w in report["warnings"]) != release.reads_referrers_capability
    assert any("dialTimeout: not rendered" in w for w in report["warnings"]) != release.honours_dial_timeout
    assert node.pull(f"{up}/team/app:3") == lab.image("plain", "team/app:3").id
