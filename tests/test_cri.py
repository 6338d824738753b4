"""The CRI message code is generated from the project's own api.proto; it must not drift."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from nodecfg.node.cri import CRIClient, api_pb2, registry_config_path

REPO = Path(__file__).resolve().parent.parent
GENERATED = ["nodecfg/node/cri/api_pb2.py", "nodecfg/node/cri/api_pb2.pyi"]


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="needs grpcio-tools: pip install -e '.[dev]'")
    subprocess.run([str(REPO / "scripts/gen-cri"), str(tmp_path)], check=True, cwd=REPO)
    for name in GENERATED:
        assert (tmp_path / name).read_text() == (REPO / name).read_text(), f"{name} is stale: run scripts/gen-cri"


def test_field_numbers_are_the_cri_wire_format() -> None:
    # kubelet and containerd agree on these numbers; a renumbered field would decode as garbage.
    msg = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image="x"), auth=api_pb2.AuthConfig(username="u"))
    assert msg.SerializeToString() == b"\n\x03\n\x01x\x12\x03\n\x01u"
    status = api_pb2.RuntimeCondition(type="RuntimeReady", status=True)
    assert status.SerializeToString() == b"\n\x0cRuntimeReady\x10\x01"


def test_config_path_is_read_from_verbose_status() -> None:
    assert registry_config_path(json.dumps({"registry": {"configPath": "/etc/containerd/certs.d"}})) == "/etc/containerd/certs.d"
    assert registry_config_path(json.dumps({"registry": {}})) is None
    assert registry_config_path("not json") is None
    assert registry_config_path(None) is None


def test_health_when_nothing_listens(tmp_path: Path) -> None:
    with CRIClient(str(tmp_path / "missing.sock"), timeout=0.5) as c:
        health = c.health()
    assert not health.ready
    assert "UNAVAILABLE" in health.describe()


def test_real_containerd_reports_ready(tmp_path: Path) -> None:
    if shutil.which("containerd") is None:
        pytest.skip("needs containerd: apt-get install -y containerd")
    # The full story (restarts, pulls) is in tests/e2e; this checks only the client against 1.6.
    from tests.e2e.harness import Containerd

    d = Path(tempfile.mkdtemp(prefix="nodecfg-cri-"))  # short: socket paths are limited to 108 bytes
    cd = Containerd(d)
    cd.config.write_text(cd.base_config())
    try:
        cd.start()
        with cd.cri() as c:
            health = c.health()
            assert health.ready, health.describe()
            assert health.runtime.startswith("containerd ")
            assert c.image_status("docker.io/library/none:1") is None
            c.remove("docker.io/library/none:1")  # removing what is not there is fine
            assert c.list_images() == []
    finally:
        cd.stop()
        shutil.rmtree(d, ignore_errors=True)
