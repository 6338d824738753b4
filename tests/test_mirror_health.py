"""Routing around sick mirrors: the render ("input minus sick endpoints"), the hysteresis of one
endpoint, and the checker's thread with a stand-in probe (the real probe is the doctor's, tested
against real registries in tests/e2e)."""

from __future__ import annotations

import queue
import threading
import time
import tomllib

import pytest

from nodecfg.containerd.legacy import Legacy
from nodecfg.containerd.versions import ContainerdTarget, ContainerdVersion, VersionSource
from nodecfg.daemon.mirrors import EndpointHealth, MirrorChecker, Settings, Transition
from nodecfg.node.paths import NodePaths
from nodecfg.node.reach import Reached
from nodecfg.node.status import MirrorStatus
from nodecfg.render import Layout, render
from nodecfg.render.hosts import MirrorEndpoint
from nodecfg.render.materials import Materials
from nodecfg.spec.loader import load_config
from nodecfg.spec.models import MirrorHealth

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
INPUT = """version: 1
registries:
  docker.io:
    mirrors:
      - url: https://a.example
        caFile: ca.pem
      - url: https://b.example
        caFile: ca.pem
      - http://c.example:5000
  quay.io:
    mirrors: [https://q1.example, https://q2.example]
    fallback: false
"""


def rendered(sick: dict[str, frozenset[str]] | None = None, text: str = INPUT):
    return render(
        load_config(text),
        Materials(files={"ca.pem": CA}),
        layout=Layout(),
        target=ContainerdTarget(ContainerdVersion(2, 1, 9), VersionSource.FLAG),
        current_config="version = 2\n",
        state_legacy=Legacy(),
        owned_auth_hosts=frozenset(),
        sick=sick,
    )


def files_of(r) -> dict[str, bytes]:
    return {f.path: f.content for f in r.files}


def hosts_of(r, registry: str) -> dict:
    return tomllib.loads(files_of(r)[f"/etc/containerd/certs.d/{registry}/hosts.toml"].decode())


def test_a_sick_mirror_is_left_out_and_nothing_else_changes():
    full = rendered()
    routed = rendered({"docker.io": frozenset({"https://a.example"})})
    assert list(hosts_of(full, "docker.io")["host"]) == ["https://a.example", "https://b.example", "http://c.example:5000"]
    assert list(hosts_of(routed, "docker.io")["host"]) == ["https://b.example", "http://c.example:5000"]
    assert routed.routed_out == (("docker.io", "https://a.example"),)
    before, after = files_of(full), files_of(routed)
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    # Only that registry's hosts.toml: its CA file stays (the probe and the way back need it),
    # config.toml is the same (no restart), the other mirrors keep their file names.
    assert changed == {"/etc/containerd/certs.d/docker.io/hosts.toml"}
    assert "/etc/containerd/certs.d/docker.io/mirror1-ca.pem" in after
    assert routed.unrouted_files == full.files  # the input's identity does not change
    assert [(e.registry, e.url) for e in routed.endpoints] == [(e.registry, e.url) for e in full.endpoints]


def test_fallback_false_moves_the_server_to_the_last_healthy_mirror_and_never_removes_the_last():
    one = rendered({"quay.io": frozenset({"https://q2.example"})})
    assert hosts_of(one, "quay.io")["server"] == "https://q1.example"
    assert "https://q1.example" not in hosts_of(one, "quay.io").get("host", {})
    both = rendered({"quay.io": frozenset({"https://q1.example", "https://q2.example"})})
    assert files_of(both) == files_of(rendered())  # nowhere else to go: both kept
    assert both.routed_out == ()
    assert any("every mirror fails its health checks and fallback is false" in w for w in both.warnings)


def test_every_mirror_out_with_fallback_leaves_the_upstream():
    r = rendered({"docker.io": frozenset({"https://a.example", "https://b.example", "http://c.example:5000"})})
    h = hosts_of(r, "docker.io")
    assert h["server"] == "https://registry-1.docker.io" and h["host"] == {}


def test_endpoints_are_what_containerd_reaches():
    eps = {(e.registry, e.url): e for e in rendered().endpoints}
    a = eps[("docker.io", "https://a.example")].entry
    assert (a.scheme, a.host, a.path, a.ca) == (
        "https",
        "a.example",
        "/v2",
        ("/etc/containerd/certs.d/docker.io/mirror1-ca.pem",),
    )
    assert eps[("quay.io", "https://q2.example")].fallback is False
    assert eps[("docker.io", "http://c.example:5000")].entry.url == "http://c.example:5000/v2"


def test_health_settings_are_per_registry_with_a_global_default():
    c = load_config(INPUT + "mirrorHealth: {interval: 1s, outAfter: 4}\n")
    assert Settings.of(c.health_of("docker.io")) == Settings(True, 1.0, 2.0, 4, 3)
    c = load_config(INPUT.replace("    fallback: false\n", "    fallback: false\n    health: {enabled: false}\n"))
    assert c.health_of("quay.io").enabled is False and c.health_of("docker.io").enabled is True


@pytest.mark.parametrize(
    ("health", "message"),
    [("{interval: 10ms}", "interval must be between 100ms and 1h"), ("{outAfter: 0}", "outAfter"), ("{timeout: 2m}", "timeout")],
)
def test_health_settings_are_bounded(health, message):
    from nodecfg.spec.loader import SpecError

    with pytest.raises(SpecError, match=message):
        load_config(INPUT + f"mirrorHealth: {health}\n")


def endpoint(url: str = "https://a.example") -> MirrorEndpoint:
    entry = next(e for e in rendered().endpoints if e.url == url)
    return entry


OK = Reached("answered", status=200, seconds=0.01)
DOWN = Reached("http", detail="TimeoutError: timed out", seconds=2.0)


def test_hysteresis_out_after_n_failures_back_after_m_answers():
    h = EndpointHealth(endpoint(), Settings(True, 1.0, 1.0, 2, 3))
    assert h.observe(DOWN, 1.0) is None and h.in_rotation
    t = h.observe(DOWN, 2.0)
    assert t is not None and t.to == "out" and not h.in_rotation
    assert t.reason == "2 failed probes in a row, last: http failed: TimeoutError: timed out"
    # Flapping: an answer, a failure, two answers: not three in a row, so still out.
    for r in (OK, DOWN, OK, OK):
        assert h.observe(r, 3.0) is None
    assert not h.in_rotation
    t = h.observe(OK, 4.0)
    assert t is not None and t.to == "back" and h.in_rotation and h.since == 4.0
    assert h.transitions == {"out": 1, "back": 1}
    # A 5xx is not an answer; a 401 (credentials wanted) is.
    assert not Reached("answered", status=503).answered and Reached("answered", status=401).answered


def test_checker_probes_on_its_own_thread_and_reports_transitions():
    results = {"https://a.example": DOWN}
    calls: list[str] = []
    gate = threading.Event()

    def probe(ep: MirrorEndpoint, timeout: float) -> Reached:
        calls.append(ep.url)
        if ep.url == "https://b.example":
            gate.wait(5)  # a hanging mirror: must not hold up the others
        return results.get(ep.url, OK)

    events: queue.SimpleQueue[Transition] = queue.SimpleQueue()
    checker = MirrorChecker(NodePaths(root="/nonexistent"), events.put, probe)
    r = rendered()
    fast = MirrorHealth(interval="100ms", timeout="1s", outAfter=2, backAfter=1)
    checker.update(r.endpoints, {"docker.io": fast, "quay.io": MirrorHealth(enabled=False)})
    checker.start()
    try:
        t = events.get(timeout=5)
        assert (t.registry, t.url, t.to) == ("docker.io", "https://a.example", "out")
        assert checker.sick() == {"docker.io": frozenset({"https://a.example"})}
        assert "https://q1.example" not in calls  # health checks off for quay.io
        results["https://a.example"] = OK
        t = events.get(timeout=5)
        assert (t.url, t.to) == ("https://a.example", "back")
        assert checker.sick() == {}
        view = {v["url"]: v for v in checker.view()}
        assert view["https://a.example"]["inRotation"] and "good probes" in view["https://a.example"]["reason"]
        # An input without that mirror drops its health; the others keep theirs.
        checker.update([e for e in r.endpoints if e.url != "https://a.example"], {"docker.io": fast, "quay.io": fast})
        assert {v["url"] for v in checker.view()} == {
            "https://b.example",
            "http://c.example:5000",
            "https://q1.example",
            "https://q2.example",
        }
    finally:
        gate.set()
        started = time.monotonic()
        checker.stop()
        assert time.monotonic() - started < 5


def test_a_restart_during_an_outage_keeps_the_sick_mirror_out_until_probes_say_it_is_well():
    events: queue.SimpleQueue[Transition] = queue.SimpleQueue()
    checker = MirrorChecker(NodePaths(root="/nonexistent"), events.put, lambda ep, t: OK)
    checker.seed([{"registry": "docker.io", "url": "https://a.example", "inRotation": False, "since": 5.0, "reason": "2 failed"}])
    # The first render after the start already leaves it out, before any probe ran.
    assert checker.sick() == {"docker.io": frozenset({"https://a.example"})}
    checker.update(rendered().endpoints, {"docker.io": MirrorHealth(interval="100ms", backAfter=2), "quay.io": MirrorHealth()})
    view = {v["url"]: v for v in checker.view()}
    assert not view["https://a.example"]["inRotation"] and view["https://a.example"]["since"] == 5.0
    assert "before this start: 2 failed" in view["https://a.example"]["reason"]
    checker.start()
    try:
        t = events.get(timeout=5)
        assert (t.url, t.to) == ("https://a.example", "back")
    finally:
        checker.stop()


def test_a_probe_that_never_returns_fails_at_its_deadline_and_never_holds_up_the_exit():
    never = threading.Event()

    def probe(ep: MirrorEndpoint, timeout: float) -> Reached:
        never.wait(60)  # a DNS lookup with no timeout, a server dripping one byte at a time
        return OK

    events: queue.SimpleQueue[Transition] = queue.SimpleQueue()
    checker = MirrorChecker(NodePaths(root="/nonexistent"), events.put, probe)
    checker.update(
        [endpoint()], {"docker.io": MirrorHealth(interval="100ms", timeout="300ms", outAfter=2), "quay.io": MirrorHealth()}
    )
    checker.start()
    try:
        t = events.get(timeout=5)
        assert (t.url, t.to) == ("https://a.example", "out")
        assert t.reason == "2 failed probes in a row, last: timeout failed: no answer within 0.3s"
    finally:
        checker.stop()
        never.set()


def test_every_key_the_checker_reports_has_a_place_in_status_json() -> None:
    """status.json's mirrors are typed (node/status.MirrorStatus): a key it did not know would be dropped silently."""
    reported = EndpointHealth(endpoint(), Settings(True, 1.0, 1.0, 2, 3)).to_json()
    typed = MirrorStatus.from_json({**reported, "inHostsToml": True}).to_json()
    assert typed == {**reported, "inHostsToml": True}
