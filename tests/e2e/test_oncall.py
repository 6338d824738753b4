"""`doctor` and `explain` against real containerd 1.6 and real registries.

(Every pull in test_registries.py is also checked against `explain`: see Node.check_explained.)
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Lab, Node
from tests.e2e.harness import run_nodecfg
from tests.e2e.releases import Release

HTTPS_TO_HTTP = "server gave HTTP response to HTTPS client"


def doctor(node: Node) -> tuple[int, dict[str, Any]]:
    r = run_nodecfg("doctor", "-o", "json", *node.nodecfg_args(), "--containerd-socket", node.containerd.socket)
    node.outputs += [r.stdout, r.stderr]
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


def failing(result: dict[str, Any]) -> list[str]:
    return [f"{c['id']}: {c['title']}: {c['detail']}" for c in result["checks"] if c["status"] == "fail"]


def test_doctor_passes_on_a_converged_node_and_probes_every_endpoint(node: Node, lab: Lab, release: Release) -> None:
    files = {
        "ca.pem": lab.pki.ca.read_text(),
        "tls.crt": lab.pki.client_cert.read_text(),
        "tls.key": lab.pki.client_key.read_text(),
    }
    node.converge(
        f"""
        version: 1
        registries:
          {lab.upstream.host}:
            plainHTTP: true
            mirrors: ["http://{lab.plain.host}"]
          {lab.tls.host}:
            caFile: ca.pem
          {lab.mtls.host}:
            caFile: ca.pem
            clientCertFile: tls.crt
            clientKeyFile: tls.key
        """,
        files,
    )
    rc, result = doctor(node)
    assert rc == 0, failing(result)
    checks = {c["id"]: c for c in result["checks"]}
    assert checks["containerd.binary"]["title"] == f"/usr/bin/containerd: containerd {release.name} (from the running containerd)"
    assert checks["containerd.cri"]["status"] == "ok" and str(node.hosts_dir) in checks["containerd.cri"]["title"]
    probed = " ".join(c["title"] for c in result["checks"] if c["id"] == "net.ok")
    for reg in (lab.plain, lab.upstream, lab.tls, lab.mtls):
        assert reg.host in probed, (reg.host, probed)  # TLS verified with the CA; mTLS with the client pair
    # Without the client pair the mTLS registry refuses the handshake, and doctor says so.
    node.converge(
        f"""
        version: 1
        registries:
          {lab.mtls.host}:
            caFile: ca.pem
        """
    )
    rc, result = doctor(node)
    assert rc == 1 and any(lab.mtls.host in f for f in failing(result)), failing(result)


def test_doctor_judges_a_root_only_hosts_toml_as_the_release_does_and_a_pull_proves_it(
    node: Node, lab: Lab, release: Release
) -> None:
    node.converge(f"""
        version: 1
        registries:
          {lab.upstream.host}:
            plainHTTP: true
        """)
    # Written by hand, as admins do: only root fields, no [host] table.
    own = node.hosts_dir / lab.plain.host
    own.mkdir()
    (own / "hosts.toml").write_text(f'server = "http://{lab.plain.host}"\n')
    rc, result = doctor(node)
    if release.reads_root_only_hosts_toml:
        # 1.7.32+ and 2.x read a file without [host]: doctor has nothing to flag, and the pull
        # goes to the file's plain-HTTP server.
        assert rc == 0, failing(result)
        assert not [c for c in result["checks"] if c["id"] == "hosts.refused"]
        assert node.pull(f"{lab.plain.host}/direct/app:1") == lab.image("plain", "direct/app:1").id
        return
    assert rc == 1
    (refused,) = [c for c in result["checks"] if c["id"] == "hosts.refused"]
    assert lab.plain.host in refused["title"] and "no [host] table" in refused["detail"]
    explained = node.explain(f"{lab.plain.host}/direct/app:1")
    assert "REFUSED" in explained["source"]
    assert explained["endpoints"][0]["url"] == f"https://{lab.plain.host}/v2"
    # containerd really ignores it: the pull goes to https:// (its default), not the file's http://.
    assert HTTPS_TO_HTTP in node.pull_error(f"{lab.plain.host}/direct/app:1")
    # The [host] stub is the only difference: now the file is used and the pull works.
    (own / "hosts.toml").write_text(f'server = "http://{lab.plain.host}"\n[host]\n')
    rc, result = doctor(node)
    assert rc == 0, failing(result)
    assert node.pull(f"{lab.plain.host}/direct/app:1") == lab.image("plain", "direct/app:1").id


def test_images_json_fills_a_mirror_the_node_can_then_switch_to(node: Node, lab: Lab, tmp_path: Path) -> None:
    up = lab.upstream.host
    node.converge(f"version: 1\nregistries:\n  {up}:\n    plainHTTP: true\n")
    want = lab.image("upstream", "team/app:2")
    assert node.pull(f"{up}/team/app:2") == want.id
    # The mirror namespace `filled` of the plain registry, as an overridePath mirror.
    out = tmp_path / "images.json"
    r = run_nodecfg(
        "images", *node.nodecfg_args(), "--containerd-socket", node.containerd.socket,
        "--mirror", f"{lab.plain.host}/filled", "--registry", up, "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    mapping = json.loads(out.read_text())
    assert mapping == {f"{up}/team/app:2": f"{lab.plain.host}/filled/team/app:2"}
    # An admin fills the mirror from images.json (skopeo here, any image-sync tool in real life).
    for src, dest in mapping.items():
        subprocess.run(
            ["skopeo", "copy", "--insecure-policy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
             f"docker://{src}", f"docker://{dest}"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    lab.images[("plain", "filled/team/app:2")] = want
    # Then the node switches to the mirror alone, and gets the same image from it.
    node.converge(f"""
        version: 1
        registries:
          {up}:
            plainHTTP: true
            mirrors:
              - url: http://{lab.plain.host}/v2/filled
                overridePath: true
            fallback: false
        """)
    before = lab.upstream.requests().count("/v2/team/app/manifests/2")
    assert node.pull(f"{up}/team/app:2") == want.id
    assert lab.upstream.requests().count("/v2/team/app/manifests/2") == before, "the upstream was contacted"
