"""Routing around sick mirrors: the render ("input minus sick endpoints"), the hysteresis of one
endpoint, the checker's thread with a stand-in probe, and the real probe against local servers
that fail the ways a mirror fails (real registries: tests/e2e)."""

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
from nodecfg.node.reach import Progress, Reached, Stage, reach
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


OK = Reached(Stage.ANSWERED, status=200, seconds=0.01)
DOWN = Reached(Stage.HTTP, detail="ConnectionResetError: [Errno 104] Connection reset by peer", seconds=0.01)


def test_hysteresis_out_after_n_failures_back_after_m_answers():
    h = EndpointHealth(endpoint(), Settings(True, 1.0, 1.0, 2, 3))
    assert h.observe(DOWN, 1.0) is None and h.in_rotation
    t = h.observe(DOWN, 2.0)
    assert t is not None and t.to == "out" and not h.in_rotation
    assert t.reason == "2 failed probes in a row, last: http failed: ConnectionResetError: [Errno 104] Connection reset by peer"
    assert t.outcome is Stage.HTTP
    # Flapping: an answer, a failure, two answers: not three in a row, so still out.
    for r in (OK, DOWN, OK, OK):
        assert h.observe(r, 3.0) is None
    assert not h.in_rotation
    t = h.observe(OK, 4.0)
    assert t is not None and t.to == "back" and h.in_rotation and h.since == 4.0
    assert h.transitions == {"out": 1, "back": 1}
    # A 5xx is not an answer; a 401 (credentials wanted) is.
    assert not Reached(Stage.ANSWERED, status=503).answered and Reached(Stage.ANSWERED, status=401).answered


def test_checker_probes_on_its_own_thread_and_reports_transitions():
    results = {"https://a.example": DOWN}
    calls: list[str] = []
    gate = threading.Event()

    def probe(ep: MirrorEndpoint, timeout: float, progress: Progress) -> Reached:
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
    checker = MirrorChecker(NodePaths(root="/nonexistent"), events.put, lambda ep, t, p: OK)
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

    def probe(ep: MirrorEndpoint, timeout: float, progress: Progress) -> Reached:
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
        assert t.outcome is Stage.TIMEOUT  # it never said it had a connection
    finally:
        checker.stop()
        never.set()


def test_every_key_the_checker_reports_has_a_place_in_status_json() -> None:
    """status.json's mirrors are typed (node/status.MirrorStatus): a key it did not know would be dropped silently."""
    h = EndpointHealth(endpoint(), Settings(True, 1.0, 1.0, 2, 3))
    for reported in (h.to_json(), (h.observe(DOWN, 1.0), h.to_json())[1]):  # before any probe, and after one
        typed = MirrorStatus.from_json({**reported, "inHostsToml": True}).to_json()
        assert typed == {**reported, "inHostsToml": True}
    assert MirrorStatus.from_json({**h.to_json(), "lastOutcome": "from-a-later-release"}).last_outcome is None


# The real probe against local servers: one that takes the connection and never answers, one that
# answers 503, one that refuses. Probe timeouts are short; nothing here asserts how long anything took.

PROBE_TIMEOUT = 0.3


def endpoint_at(host_port: str) -> MirrorEndpoint:
    """The one mirror endpoint of an input whose registry has `http://<host_port>` as its mirror."""
    (ep,) = rendered(text=f"version: 1\nregistries:\n  reg.example:\n    mirrors: ['http://{host_port}']\n").endpoints
    return ep


SERVERS = [
    # (fixture, where the probe stops, what status.json and the log line say)
    ("silent_server", Stage.NO_ANSWER, "connected but no answer: no response headers within 0.3s"),
    ("unavailable_server", Stage.ANSWERED, "HTTP 503 in"),
    ("refusing_port", Stage.CONNECT, "connect failed: ConnectionRefusedError"),
]


@pytest.mark.parametrize(("server", "stage", "said"), SERVERS)
def test_the_probe_tells_a_mirror_that_never_answers_from_a_503_and_a_refusal(request, tmp_path, server, stage, said):
    ep = endpoint_at(request.getfixturevalue(server))
    progress = Progress()
    r = reach(ep.entry, {}, NodePaths(root=str(tmp_path)), PROBE_TIMEOUT, progress=progress)
    assert r.stage is stage and not r.answered, r
    assert r.describe().startswith(said), r.describe()
    assert r.status == (503 if server == "unavailable_server" else None)
    if stage is not Stage.CONNECT:
        assert progress.stage is Stage.NO_ANSWER  # it got as far as waiting for the answer


@pytest.mark.parametrize(("server", "stage", "said"), SERVERS)
def test_the_checker_takes_each_out_and_says_why(request, tmp_path, server, stage, said):
    """The daemon's checker with the real probe: the reason reaches the transition (the log line) and status.json."""
    ep = endpoint_at(request.getfixturevalue(server))
    events: queue.SimpleQueue[Transition] = queue.SimpleQueue()
    checker = MirrorChecker(NodePaths(root=str(tmp_path)), events.put)
    checker.update([ep], {"reg.example": MirrorHealth(interval="100ms", timeout=f"{PROBE_TIMEOUT}s", outAfter=2)})
    checker.start()
    try:
        t = events.get(timeout=10)
    finally:
        checker.stop()
    # A silent server is given up by the checker at its deadline or by the probe's own read
    # timeout, whichever comes first: both say the same.
    assert (t.url, t.to, t.outcome) == (ep.url, "out", stage), t
    assert t.reason.startswith(f"2 failed probes in a row, last: {said}"), t.reason
    (seen,) = checker.view()
    status = MirrorStatus.from_json({**seen, "inHostsToml": False})
    assert status.last_outcome is stage and seen["lastOutcome"] == stage.value
    assert said in status.note()


@pytest.mark.parametrize(
    ("at", "stage", "said"),
    [
        (Stage.DNS, Stage.TIMEOUT, "timeout failed: no answer within 1s"),
        (Stage.CONNECT, Stage.CONNECT, "connect failed: no connection within 1s"),
        (Stage.TLS, Stage.TLS, "tls failed: no TLS handshake within 1s"),
        (Stage.NO_ANSWER, Stage.NO_ANSWER, "connected but no answer: no response headers within 1s"),
    ],
)
def test_a_probe_given_up_at_its_deadline_is_judged_by_the_step_it_had_reached(at, stage, said):
    h = EndpointHealth(endpoint(), Settings(True, 1.0, 1.0, 2, 3), progress=Progress(at))
    r = h.given_up()
    assert (r.stage, r.describe()) == (stage, said)


def test_a_probe_given_up_while_waiting_for_the_answer_is_no_answer_not_a_timeout():
    """The checker keeps the deadline; what it reports depends on the step the probe had reached."""
    release = threading.Event()

    def probe(ep: MirrorEndpoint, timeout: float, progress: Progress) -> Reached:
        progress.stage = Stage.NO_ANSWER  # connected, request sent
        release.wait(60)  # a server dripping its headers one byte at a time: no read ever times out
        return OK

    events: queue.SimpleQueue[Transition] = queue.SimpleQueue()
    checker = MirrorChecker(NodePaths(root="/nonexistent"), events.put, probe)
    checker.update(
        [endpoint()], {"docker.io": MirrorHealth(interval="100ms", timeout="300ms", outAfter=2), "quay.io": MirrorHealth()}
    )
    checker.start()
    try:
        t = events.get(timeout=5)
        assert (t.url, t.to, t.outcome) == ("https://a.example", "out", Stage.NO_ANSWER)
        assert t.reason == "2 failed probes in a row, last: connected but no answer: no response headers within 0.3s"
    finally:
        checker.stop()
        release.set()
