"""Mirror outages on real containerd: the daemon takes a sick mirror out of rotation and puts it
back when well, with hosts.toml writes only (never a restart).

The mirror is `lab.flaky`, a proxy in front of the plain registry that forwards, hangs, refuses,
resets, answers 503 or answers slowly. The upstream serves other content under the same names,
so the image id of every pull says who served it.
"""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.conftest import Lab, Node
from tests.e2e.harness import run_nodecfg
from tests.e2e.releases import Release

FAST = "health: {interval: 300ms, timeout: 1s, outAfter: 2, backAfter: 2}"
# Where the probe of each failure mode stops (`lastOutcome` in status.json, `outcome` in the log):
# a hanging mirror takes the connection and sends no response headers, which is its own outcome.
# A reset lands on the request, or (the server resets as it accepts) already on the connect: both
# were seen on a loaded machine, and both are a reset, never a hang.
OUTCOME = {"hang": {"no-answer"}, "refuse": {"connect"}, "reset": {"http", "connect"}, "503": {"answered"}}


def hosts_toml(node: Node, registry: str) -> str:
    p = node.hosts_dir / registry / "hosts.toml"
    return p.read_text() if p.exists() else ""


def status(node: Node) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((node.d / "nodecfg-state" / "status.json").read_text())
    return data


def test_a_sick_mirror_is_routed_around_in_every_failure_mode_and_put_back(node: Node, lab: Lab, release: Release) -> None:
    up, flaky = lab.upstream.host, lab.flaky
    ref = f"{up}/team/app:3"
    mirror_id, upstream_id = lab.image("plain", "team/app:3").id, lab.image("upstream", "team/app:3").id
    text = f"version: 1\nregistries:\n  {up}:\n    plainHTTP: true\n    mirrors: ['http://{flaky.host}']\n    {FAST}\n"
    node.converge(text)  # config_path in place: what follows is hot
    pid = node.containerd.pid
    _vol, d = node.follow({"registries.yaml": text})
    try:
        assert node.pull(ref) == mirror_id
        for mode in ("hang", "refuse", "reset", "503"):
            flaky.set(mode)
            d.wait_for(f"{mode}: the mirror out of hosts.toml", lambda: flaky.host not in hosts_toml(node, up), timeout=20)
            assert node.pull(ref) == upstream_id, mode  # the pull no longer reaches the sick mirror
            out = [m for m in status(node)["mirrors"] if m["url"] == f"http://{flaky.host}"]
            assert out and not out[0]["inRotation"] and not out[0]["inHostsToml"], out
            assert out[0]["lastOutcome"] in OUTCOME[mode], out
            if mode == "hang":
                assert "last: connected but no answer: no response headers within 1s" in out[0]["reason"], out
            explained = node.explain(ref)
            assert any(f"http://{flaky.host}" in n and "out of rotation" in n for n in explained["notes"]), explained
            if mode == "hang":
                r = run_nodecfg("doctor", "-o", "json", "--no-network", "--no-cri", *node.nodecfg_args())
                flagged = [c for c in json.loads(r.stdout)["checks"] if c["id"] == "mirror.out"]
                assert flagged and flaky.host in flagged[0]["title"] and flagged[0]["status"] == "warn", r.stdout
                assert "connected but no answer" in flagged[0]["detail"], r.stdout
            flaky.set("forward")
            d.wait_for(f"{mode}: the mirror back", lambda: flaky.host in hosts_toml(node, up), timeout=20)
            assert node.pull(ref) == mirror_id, mode
        # Slow but answering within the probe timeout: it stays.
        flaky.set("slow")
        d.wait_for("a few slow probes", lambda: d.metric_labeled("nodecfg_mirror_probe_seconds_count") >= 8, timeout=20)
        assert flaky.host in hosts_toml(node, up)
        assert node.pull(ref) == mirror_id
        flaky.set("forward")
        assert node.containerd.pid == pid and d.metric("nodecfg_restarts_total") == 0
        assert d.metric_labeled("nodecfg_mirror_transitions_total", to="out") == 4
        assert d.metric_labeled("nodecfg_mirror_up") == 1
        moves = [e for e in d.events() if e.get("event") == "mirror"]
        assert [e["to"] for e in moves] == ["out", "back"] * 4, moves
        outcomes = [e["outcome"] for e in moves]
        assert outcomes[1::2] == ["answered"] * 4, moves
        assert all(o in OUTCOME[mode] for o, mode in zip(outcomes[::2], OUTCOME, strict=True)), moves
        assert d.stop() == 0
    finally:
        flaky.set("forward")


def test_with_fallback_false_the_upstream_is_never_contacted_and_the_last_mirror_is_kept(node: Node, lab: Lab) -> None:
    up, flaky = lab.upstream.host, lab.flaky
    ref = f"{up}/team/app:3"
    text = (
        f"version: 1\nregistries:\n  {up}:\n    fallback: false\n"
        f"    mirrors: ['http://{flaky.host}', 'http://{lab.plain.host}']\n    {FAST}\n"
        f"  quay.io:\n    fallback: false\n    mirrors: ['http://{flaky.host}']\n    {FAST}\n"
    )
    node.converge(text)
    _vol, d = node.follow({"registries.yaml": text})
    before = lab.upstream.requests().count("/v2/team/app/")
    try:
        assert node.pull(ref) == lab.image("plain", "team/app:3").id
        flaky.set("hang")
        d.wait_for("the sick mirror out", lambda: flaky.host not in hosts_toml(node, up), timeout=20)
        assert f'server = "http://{lab.plain.host}"' in hosts_toml(node, up)
        assert node.pull(ref) == lab.image("plain", "team/app:3").id

        # quay.io has nowhere else to go: its only mirror stays, and status says so (its own
        # probes of the same endpoint may judge it a moment later).
        def kept() -> bool:
            q = [m for m in status(node)["mirrors"] if m["registry"] == "quay.io"]
            return bool(q) and not q[0]["inRotation"] and q[0]["inHostsToml"]

        d.wait_for("quay.io's mirror judged sick and kept", kept, timeout=20)
        assert flaky.host in hosts_toml(node, "quay.io")
        assert lab.upstream.requests().count("/v2/team/app/") == before, "the upstream was contacted"
        assert d.stop() == 0
    finally:
        flaky.set("forward")
