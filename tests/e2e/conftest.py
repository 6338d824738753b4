"""Fixtures for the end-to-end suite: one lab of registries per session, one containerd per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from tests.e2e import releases
from tests.e2e.harness import HOSTS_FILE, INSTALL, missing_binaries
from tests.e2e.lab import AUTH_PASSWORD, AUTH_USER, Lab, Node, open_lab, open_node

__all__ = ["AUTH_PASSWORD", "AUTH_USER", "Lab", "Node"]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _unavailable(reason: str) -> None:
    """Skip locally; fail where the suite must run (CI sets NODECFG_E2E_REQUIRED=1)."""
    if os.environ.get("NODECFG_E2E_REQUIRED") == "1":
        pytest.fail(f"e2e cannot run here but NODECFG_E2E_REQUIRED=1: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    missing = missing_binaries()
    if missing:
        _unavailable(f"e2e needs Debian packages {', '.join(missing)}: {INSTALL}")
    if not os.access(HOSTS_FILE, os.W_OK):
        _unavailable(f"e2e needs to add test names to {HOSTS_FILE} (run as root, as CI does)")
    with open_lab() as lab:
        yield lab


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test on a node runs once per config.toml shape the release reads (v2; v3 on 2.x; v4 on 2.3+)."""
    if "node" in metafunc.fixturenames:
        shapes = releases.current().shapes if shutil.which("containerd") else ("v2",)
        metafunc.parametrize("node", shapes, indirect=True)


@pytest.fixture
def release() -> releases.Release:
    """The containerd release this run of the suite is on (what to expect of it)."""
    return releases.current()


@pytest.fixture
def node(lab: Lab, request: pytest.FixtureRequest) -> Iterator[Node]:
    with open_node(lab, getattr(request, "param", "v2")) as n:
        try:
            yield n
        finally:
            rep = getattr(request.node, "rep_call", None)
            if rep is not None and rep.failed:
                print(f"\n--- containerd log (tail) for {request.node.name}:\n{n.containerd.log.read_text()[-4000:]}")
                for daemon in n.daemons:
                    print(f"--- {daemon.log.name} (tail):\n{daemon.log.read_text()[-4000:]}")
                for f in sorted(n.hosts_dir.rglob("hosts.toml")) if n.hosts_dir.exists() else []:
                    print(f"--- {f}:\n{f.read_text()}")
    # Anything the test left running under its dir (a shim, a stray daemon) is a bug here.
    leftover = [p.pid for p in psutil.process_iter(["cmdline"]) if str(n.d) in " ".join(p.info["cmdline"] or [])]
    assert not leftover, f"processes left behind under {n.d}: {leftover}"
