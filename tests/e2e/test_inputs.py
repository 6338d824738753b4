"""Other tools' formats as the input, proven by real CRI pulls on containerd 1.6."""

from __future__ import annotations

import json
import time
from pathlib import Path

from nodecfg.render.etc_hosts import BEGIN, strip_block
from tests.e2e.conftest import AUTH_PASSWORD, AUTH_USER, Lab, Node
from tests.e2e.harness import run_nodecfg


def test_k3s_registries_yaml_with_auth_tls_and_a_mirror(node: Node, lab: Lab) -> None:
    # As k3s users write it: literal credentials, a CA path, the mirror for docker.io.
    report = node.converge(
        f"""
        mirrors:
          docker.io:
            endpoint:
              - "https://{lab.auth.host}"
        configs:
          "{lab.auth.host}":
            auth:
              username: {AUTH_USER}
              password: {AUTH_PASSWORD}
            tls:
              ca_file: ca.pem
        """,
        {"ca.pem": lab.pki.ca.read_text()},
    )
    assert report["restartRequired"]
    assert node.pull("hello:1") == lab.image("auth", "library/hello:1").id
    assert node.pull(f"{lab.auth.host}/private/app:1") == lab.image("auth", "private/app:1").id
    assert not any(AUTH_PASSWORD in out for out in node.outputs)


def test_k3s_rewrite_is_refused_and_nothing_changes(node: Node, lab: Lab) -> None:
    before = node.containerd.config.read_text()
    node.write_input(f"""
        mirrors:
          docker.io:
            endpoint: ["http://{lab.plain.host}"]
            rewrite:
              "^library/(.*)": "org1/library/$1"
        """)
    r = run_nodecfg("apply", *node.nodecfg_args())
    assert r.returncode == 2 and "cannot rewrite repository paths" in r.stderr
    assert node.containerd.config.read_text() == before and not node.hosts_dir.exists()


def test_image_replacement_rules_with_a_mirror_namespace(node: Node, lab: Lab) -> None:
    rules = [{"repositoryPrefix": "quay.io", "replaceWith": f"http://{lab.plain.host}/org1"}]
    node.converge(json.dumps(rules))
    # quay.io/library/hello:2 comes from the namespace org1 of the replacement, never from quay.io.
    assert node.pull("quay.io/library/hello:2") == lab.image("plain", "org1/library/hello:2").id


def test_auth_json_with_env_references(node: Node, lab: Lab) -> None:
    auth_json = {lab.auth.host: {"username": "${REG_USER}", "password": "${REG_PASSWORD}"}}
    node.converge(
        f"""
        version: 1
        registries:
          {lab.auth.host}:
            caFile: ca.pem
        credentials:
          - authJSON: sync/auth.json
        """,
        {"ca.pem": lab.pki.ca.read_text(), "sync/auth.json": json.dumps(auth_json)},
        env={"REG_USER": AUTH_USER, "REG_PASSWORD": AUTH_PASSWORD},
    )
    assert node.pull(f"{lab.auth.host}/private/app:1") == lab.image("auth", "private/app:1").id


def test_host_alias_is_resolved_by_containerd_without_a_restart(node: Node, lab: Lab) -> None:
    alias = "alias-only.test"  # in no DNS and in none of the lab's /etc/hosts lines
    host = f"{alias}:{lab.plain.port}"
    ref = f"{host}/direct/app:1"
    registries = f"version: 1\nregistries:\n  {host}:\n    plainHTTP: true\n"
    try:
        node.converge(registries)
        assert alias in node.pull_error(ref)  # the name does not resolve
        restarts = node.restarts
        report = node.converge(registries + "hostAliases:\n  - {ip: 127.0.0.1, hostnames: [" + alias + "]}\n")
        assert not report["restartRequired"] and node.restarts == restarts, "an alias is hot"
        assert [op["path"] for op in report["operations"]] == ["/etc/hosts"]
        # Go's resolver in containerd re-reads /etc/hosts at most every 5 s (net/hosts.go cacheMaxAge).
        assert node.eventually_pulls(ref, within=10) == lab.image("plain", "direct/app:1").id
        node.converge(registries)
        assert BEGIN not in Path("/etc/hosts").read_text()
        time.sleep(5.5)
        assert alias in node.pull_error(ref)
    finally:
        text = Path("/etc/hosts").read_text()
        if BEGIN in text:
            Path("/etc/hosts").write_text(strip_block(text))
