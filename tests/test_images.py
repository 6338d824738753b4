"""`nodecfg images`: where each image must sit in a mirror for containerd to find it there."""

from __future__ import annotations

import pytest

from nodecfg.oncall.images import MirrorError, destination_prefix, image_mapping, tagged_or_digest
from nodecfg.spec.loader import load_config
from tests.conftest import run

DIGEST = "sha256:" + "cd" * 32
CONFIG = load_config("""
version: 1
registries:
  docker.io:
    mirrors:
      - url: https://harbor.example/v2/hub-proxy
        overridePath: true
  quay.io:
    mirrors: ["https://quay-mirror.example:5000"]
  ghcr.io:
    mirrors: ["https://prefixed.example/some/path"]
  "*":
    mirrors: ["http://cache.example"]
""")


def test_each_registry_goes_to_its_first_mirror_at_the_path_containerd_asks_for():
    refs = ["docker.io/library/nginx:1.25", "quay.io/coreos/etcd:v3", "reg.example:5000/team/app:1"]
    synced = image_mapping(refs, mirror=None, config=CONFIG)
    assert synced.mapping == {
        "docker.io/library/nginx:1.25": "harbor.example/hub-proxy/library/nginx:1.25",
        "quay.io/coreos/etcd:v3": "quay-mirror.example:5000/coreos/etcd:v3",
        "reg.example:5000/team/app:1": "cache.example/team/app:1",
    }


def test_a_mirror_with_a_plain_path_cannot_be_named_by_an_image_reference():
    synced = image_mapping(["ghcr.io/org/tool:1"], mirror=None, config=CONFIG)
    assert synced.mapping == {}
    assert "asks it for <path>/v2/<repository>" in synced.warnings[0]


def test_a_fixed_mirror_collisions_and_filters():
    refs = ["docker.io/library/app:1", "quay.io/library/app:1", "m.example/library/x:1", f"quay.io/a/b@{DIGEST}"]
    synced = image_mapping(refs, mirror="m.example", config=None)
    assert synced.mapping["quay.io/a/b@" + DIGEST] == f"m.example/a/b@{DIGEST}"
    assert "m.example/library/x:1" not in synced.mapping  # already on the mirror
    assert len([k for k in synced.mapping if k.endswith("library/app:1")]) == 1
    assert any("both map to m.example/library/app:1" in w for w in synced.warnings)
    only = image_mapping(refs, mirror="m.example/ns", config=None, registries=["quay.io"])
    assert set(only.mapping) == {"quay.io/library/app:1", f"quay.io/a/b@{DIGEST}"}
    assert only.mapping["quay.io/library/app:1"] == "m.example/ns/library/app:1"


def test_without_a_mirror_in_the_input_the_image_is_skipped_with_a_reason():
    config = load_config("version: 1\n")
    synced = image_mapping(["docker.io/library/nginx:1"], mirror=None, config=config)
    assert synced.mapping == {} and "gives docker.io no mirror" in synced.warnings[0]


def test_tags_make_digests_redundant_per_repository():
    tags = ["docker.io/library/nginx:1.25"]
    digests = [f"docker.io/library/nginx@{DIGEST}", f"other.example/nginx@{DIGEST}"]
    assert tagged_or_digest(tags, digests) == [*tags, f"other.example/nginx@{DIGEST}"]


@pytest.mark.parametrize(("mirror", "prefix"), [("m.example", "m.example"), ("https://h.example/v2/p/", "h.example/p"), ("h:5000/a/b", "h:5000/a/b")])  # fmt: skip
def test_destination_prefix(mirror, prefix):
    assert destination_prefix(mirror) == prefix


def test_bad_mirror_is_refused():
    with pytest.raises(MirrorError, match="mirror 'bad host/x': must be a host name"):
        destination_prefix("bad host/x")


def test_images_without_containerd_is_a_quick_clear_error(tmp_path):
    rc, out, err = run("images", "--root", str(tmp_path), "--mirror", "m.example")
    assert rc == 2 and out == "" and "no socket" in err and "--containerd-socket" in err
