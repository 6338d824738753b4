"""Every rendered feature, proven by real containerd 1.6 pulling through CRI (as kubelet does).

Each test writes a registries.yaml, runs `nodecfg apply`, restarts the test containerd only when
nodecfg says a restart is required, and pulls. Every registry serves different content under the
same names, so the image id of a pull says which registry served it. Where a feature could pass
without nodecfg doing anything, a control pull first shows the failure the feature must fix.
"""

from __future__ import annotations

import base64
import json

from tests.e2e.conftest import AUTH_PASSWORD, AUTH_USER, Lab, Node
from tests.e2e.releases import Release

HTTPS_TO_HTTP = "server gave HTTP response to HTTPS client"
UNKNOWN_CA = "certificate signed by unknown authority"


def test_docker_hub_mirror_serves_the_pull(node: Node, lab: Lab) -> None:
    report = node.converge(f"""
        version: 1
        registries:
          docker.io:
            mirrors: ["http://{lab.plain.host}"]
        """)
    assert report["restartRequired"], "config_path is new in config.toml: containerd must restart"
    assert node.loaded_config_path() == str(node.hosts_dir), "containerd loaded the config_path nodecfg wrote"
    want = lab.image("plain", "library/hello:1")
    assert node.pull("hello:1") == want.id  # kubelet's short name, normalised to docker.io/library/hello:1
    assert "ns=docker.io" in lab.plain.requests()
    assert node.ctr_pull("docker.io/library/hello:1") == want.manifest_digest


def test_mirror_without_the_image_falls_back_to_the_upstream(node: Node, lab: Lab) -> None:
    up = lab.upstream.host
    node.converge(f"""
        version: 1
        registries:
          {up}:
            plainHTTP: true
            mirrors: ["http://{lab.plain.host}"]
        """)
    # Only the upstream has team/app:2; both have team/app:3, and the mirror is asked first.
    assert node.pull(f"{up}/team/app:2") == lab.image("upstream", "team/app:2").id
    assert node.pull(f"{up}/team/app:3") == lab.image("plain", "team/app:3").id


def test_dead_mirror_falls_back_to_the_upstream(node: Node, lab: Lab) -> None:
    up = lab.upstream.host
    node.converge(f"""
        version: 1
        registries:
          {up}:
            plainHTTP: true
            mirrors: ["http://{lab.dead}"]
        """)
    want = lab.image("upstream", "team/app:2")
    assert node.pull(f"{up}/team/app:2") == want.id
    assert node.ctr_pull(f"{up}/team/app:2") == want.manifest_digest


def test_fallback_false_never_contacts_the_upstream(node: Node, lab: Lab) -> None:
    up = lab.upstream.host
    node.converge(f"""
        version: 1
        registries:
          {up}:
            plainHTTP: true
            mirrors: ["http://{lab.dead}"]
            fallback: false
        """)
    before = lab.upstream.requests().count("/v2/team/app/manifests/2")
    err = node.pull_error(f"{up}/team/app:2")
    assert lab.dead in err, err  # the error names the mirror that failed
    # A live mirror without the image: not found, although the upstream has it.
    node.converge(f"""
        version: 1
        registries:
          {up}:
            plainHTTP: true
            mirrors: ["http://{lab.plain.host}"]
            fallback: false
        """)
    err = node.pull_error(f"{up}/team/app:2")
    assert "not found" in err, err
    assert lab.upstream.requests().count("/v2/team/app/manifests/2") == before, "the upstream was contacted"


def test_plain_http_registry(node: Node, lab: Lab) -> None:
    ref = f"{lab.plain.host}/direct/app:1"
    assert HTTPS_TO_HTTP in node.pull_error(ref)  # containerd's default for a named host is HTTPS
    node.converge(f"""
        version: 1
        registries:
          {lab.plain.host}:
            plainHTTP: true
        """)
    want = lab.image("plain", "direct/app:1")
    assert node.pull(ref) == want.id
    assert node.ctr_pull(ref) == want.manifest_digest


def test_self_signed_ca(node: Node, lab: Lab) -> None:
    ref = f"{lab.tls.host}/secure/app:1"
    assert UNKNOWN_CA in node.pull_error(ref)
    node.converge(
        f"""
        version: 1
        registries:
          {lab.tls.host}:
            caFile: ca.pem
        """,
        {"ca.pem": lab.pki.ca.read_text()},
    )
    want = lab.image("tls", "secure/app:1")
    assert node.pull(ref) == want.id
    assert node.ctr_pull(ref) == want.manifest_digest
    # A CA that did not sign the registry's certificate is not enough: the content of `ca` matters.
    report = node.converge(files={"ca.pem": lab.pki.other_ca.read_text()})
    assert not report["restartRequired"], "a CA file is read on every pull: no restart"
    assert UNKNOWN_CA in node.pull_error(ref)


def test_skip_verify(node: Node, lab: Lab) -> None:
    ref = f"{lab.tls.host}/secure/app:1"
    node.converge(f"""
        version: 1
        registries:
          {lab.tls.host}:
            skipVerify: true
        """)
    assert node.pull(ref) == lab.image("tls", "secure/app:1").id


def test_client_certificates(node: Node, lab: Lab) -> None:
    ref = f"{lab.mtls.host}/mtls/app:1"
    files = {
        "ca.pem": lab.pki.ca.read_text(),
        "tls.crt": lab.pki.client_cert.read_text(),
        "tls.key": lab.pki.client_key.read_text(),
    }
    node.converge(
        f"""
        version: 1
        registries:
          {lab.mtls.host}:
            caFile: ca.pem
        """,
        files,
    )
    err = node.pull_error(ref)
    assert "certificate" in err, err  # the registry refuses a client without a certificate
    node.converge(f"""
        version: 1
        registries:
          {lab.mtls.host}:
            caFile: ca.pem
            clientCertFile: tls.crt
            clientKeyFile: tls.key
        """)
    want = lab.image("mtls", "mtls/app:1")
    assert node.pull(ref) == want.id
    assert node.ctr_pull(ref) == want.manifest_digest
    key = next(node.hosts_dir.rglob("*.key"))
    assert key.stat().st_mode & 0o777 == 0o600


def test_basic_auth_on_a_registry_from_dockerconfigjson(node: Node, lab: Lab, release: Release) -> None:
    ref = f"{lab.auth.host}/private/app:1"
    ca = {"ca.pem": lab.pki.ca.read_text()}
    node.converge(
        f"""
        version: 1
        registries:
          {lab.auth.host}:
            caFile: ca.pem
        """,
        ca,
    )
    assert release.no_credentials_error in node.pull_error(ref)
    pull_secret = {"auths": {lab.auth.host: {"auth": base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()}}}
    report = node.converge(
        f"""
        version: 1
        registries:
          {lab.auth.host}:
            caFile: ca.pem
        credentials:
          - dockerConfigJSON: pull-secret/.dockerconfigjson
        """,
        {"pull-secret/.dockerconfigjson": json.dumps(pull_secret)},
    )
    assert report["restartRequired"], "credentials live in config.toml: containerd must restart"
    assert node.pull(ref) == lab.image("auth", "private/app:1").id
    assert not any(AUTH_PASSWORD in out for out in node.outputs)
    with node.containerd.cri() as c:
        # 1.x's verbose status carries the credentials in clear text (2.x's has no registry
        # config); nodecfg's health check reads only config_path from it.
        assert (AUTH_PASSWORD in c.status(verbose=True).info["config"]) == release.reports_config_path_over_cri
        assert AUTH_PASSWORD not in repr(c.health())


def test_basic_auth_on_a_mirror_from_password_file(node: Node, lab: Lab) -> None:
    node.converge(
        f"""
        version: 1
        registries:
          docker.io:
            mirrors:
              - url: https://{lab.auth.host}
                caFile: ca.pem
        credentials:
          - registry: {lab.auth.host}
            username: {AUTH_USER}
            passwordFile: auth/password
        """,
        {"ca.pem": lab.pki.ca.read_text(), "auth/password": AUTH_PASSWORD + "\n"},
    )
    # Keyed by the mirror's host:port, the host containerd contacts, not by docker.io.
    assert node.pull("docker.io/library/hello:1") == lab.image("auth", "library/hello:1").id
    assert not any(AUTH_PASSWORD in out for out in node.outputs)


def test_default_mirror_for_every_registry(node: Node, lab: Lab) -> None:
    node.converge(f"""
        version: 1
        registries:
          "*":
            mirrors: ["http://{lab.plain.host}"]
        """)
    assert (node.hosts_dir / "_default" / "hosts.toml").exists()
    assert node.pull("quay.io/team/app:3") == lab.image("plain", "team/app:3").id
    assert "ns=quay.io" in lab.plain.requests()


def test_a_registry_of_its_own_shadows_the_default_mirror(node: Node, lab: Lab) -> None:
    up = lab.upstream.host
    node.converge(f"""
        version: 1
        registries:
          "*":
            mirrors: ["http://{lab.plain.host}"]
          {up}:
            plainHTTP: true
        """)
    # Both have team/app:3; the registry's own directory wins over _default, so no mirror is used.
    assert node.pull(f"{up}/team/app:3") == lab.image("upstream", "team/app:3").id
    assert node.pull("quay.io/team/app:3") == lab.image("plain", "team/app:3").id


def test_pull_only_mirror_is_never_asked_to_resolve_a_tag(node: Node, lab: Lab) -> None:
    up = lab.upstream.host
    node.converge(f"""
        version: 1
        registries:
          {up}:
            plainHTTP: true
            mirrors:
              - url: http://{lab.plain.host}
                capabilities: [pull]
        """)
    # The mirror has team/app:3 too, but only the upstream may turn the tag into a digest; the
    # mirror is then asked for that digest's content, which it does not have.
    before = lab.plain.requests().count("/v2/team/app/manifests/3")
    assert node.pull(f"{up}/team/app:3") == lab.image("upstream", "team/app:3").id
    assert lab.plain.requests().count("/v2/team/app/manifests/3") == before
    assert "/v2/team/app/manifests/sha256:" in lab.plain.requests()


def test_mirror_namespace_through_override_path(node: Node, lab: Lab) -> None:
    node.converge(f"""
        version: 1
        registries:
          quay.io:
            mirrors:
              - url: http://{lab.plain.host}/v2/org1
                overridePath: true
            fallback: false
        """)
    # quay.io/library/hello:2 is served from the mirror's repository org1/library/hello.
    assert node.pull("quay.io/library/hello:2") == lab.image("plain", "org1/library/hello:2").id


def test_headers_reach_the_registry(node: Node, lab: Lab) -> None:
    up = lab.upstream.host
    node.converge(f"""
        version: 1
        registries:
          {up}:
            plainHTTP: true
            headers:
              X-Registry-Header: registry-wide
            mirrors:
              - url: http://{lab.proxy.host}
                headers:
                  X-Mirror-Header: [one, two]
        """)
    assert node.pull(f"{up}/headers/app:1") == lab.image("plain", "headers/app:1").id
    seen = [h for _m, path, h in lab.proxy.seen if "/headers/app/" in path]
    assert seen, "the mirror (recording proxy) got no request"
    assert all(h.get("x-mirror-header") == ["one", "two"] for h in seen), seen
    assert all("x-registry-header" not in h for h in seen), "registry-level headers go to the registry only"


def test_legacy_mirrors_are_migrated_and_cri_stays_healthy(node: Node, lab: Lab) -> None:
    cd = node.containerd
    legacy = f'[{cd.registry_table}.mirrors."docker.io"]\n  endpoint = ["http://{lab.plain.host}"]\n'
    cd.config.write_text(cd.base_config(legacy))
    cd.restart()
    assert cd.serves_cri()
    # Adding config_path by hand next to `mirrors` is what breaks nodes: CRI fails to load.
    cd.config.write_text(cd.base_config(legacy + f'[{cd.registry_table}]\n  config_path = "{node.hosts_dir}"\n'))
    cd.restart()
    assert not cd.serves_cri()
    cd.config.write_text(cd.base_config(legacy))
    cd.restart()

    report = node.converge("version: 1\n")
    assert report["restartRequired"]
    assert cd.serves_cri()
    assert node.loaded_config_path() == str(node.hosts_dir)
    assert "mirrors" not in cd.config.read_text()
    assert node.pull("docker.io/library/hello:1") == lab.image("plain", "library/hello:1").id


def test_hosts_only_change_takes_effect_without_a_restart(node: Node, lab: Lab) -> None:
    hub = """
        version: 1
        registries:
          docker.io:
            mirrors: ["http://{}"]
        """
    node.converge(hub.format(lab.plain.host))
    pid = node.containerd.pid
    assert node.pull("docker.io/library/hello:1") == lab.image("plain", "library/hello:1").id
    report = node.converge(hub.format(lab.upstream.host))
    assert report["operations"] and not report["restartRequired"]
    assert all(op["class"] == "hot" for op in report["operations"])
    assert node.pull("docker.io/library/hello:1") == lab.image("upstream", "library/hello:1").id
    assert node.containerd.pid == pid


def test_removing_a_registry_removes_its_effect(node: Node, lab: Lab) -> None:
    ref = f"{lab.plain.host}/direct/app:1"
    node.converge(f"""
        version: 1
        registries:
          {lab.plain.host}:
            plainHTTP: true
          {lab.tls.host}:
            skipVerify: true
        """)
    assert node.pull(ref) == lab.image("plain", "direct/app:1").id
    report = node.converge(f"""
        version: 1
        registries:
          {lab.tls.host}:
            skipVerify: true
        """)
    assert not report["restartRequired"]
    assert not any(lab.plain.name in p.name for p in node.hosts_dir.iterdir())
    assert HTTPS_TO_HTTP in node.pull_error(ref)
    assert node.pull(f"{lab.tls.host}/secure/app:1") == lab.image("tls", "secure/app:1").id
