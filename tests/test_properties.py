"""Property tests: arbitrary input only ever fails as a validation error, and never escapes."""

from __future__ import annotations

import os
import posixpath

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodecfg.containerd.errors import ConfigError
from nodecfg.containerd.legacy import Legacy
from nodecfg.containerd.versions import ContainerdTarget, ContainerdVersion, VersionSource
from nodecfg.render import Layout, render
from nodecfg.render.materials import Materials
from nodecfg.spec.loader import SpecError, load_config

HOSTS_DIR = "/etc/containerd/certs.d"
TARGET = ContainerdTarget(ContainerdVersion(1, 6, 20), VersionSource.FLAG)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=30))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20,
)
keys = st.one_of(
    st.text(max_size=40), st.sampled_from(["..", "../x", "*", "/etc", "a:1", "[::1]:1", "docker.io", ".", "a/../../b", "x\x00"])
)


def _render(config):
    try:
        return render(
            config,
            Materials(),
            layout=Layout(),
            target=TARGET,
            current_config="",
            state_legacy=Legacy(),
            owned_auth_hosts=frozenset(),
        )
    except ConfigError:
        return None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.dictionaries(st.sampled_from(["version", "registries", "credentials", "restart", "hostAliases", "x"]), values, max_size=5)
)
def test_arbitrary_documents_only_raise_spec_errors(doc):
    text = yaml.safe_dump(doc)
    try:
        load_config(text)
    except SpecError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_only_raises_spec_errors(text):
    try:
        load_config(text)
    except SpecError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, st.sampled_from([{}, {"plainHTTP": True}, {"mirrors": ["https://m.example"]}]), max_size=4))
def test_registry_keys_never_produce_a_path_outside_the_hosts_dir(registries):
    text = yaml.safe_dump({"version": 1, "registries": registries})
    try:
        config = load_config(text)
    except SpecError:
        return
    rendered = _render(config)
    assert rendered is not None
    for f in rendered.files:
        if f.path == Layout().containerd_config:
            continue
        norm = posixpath.normpath(f.path)
        assert norm == f.path
        assert os.path.commonpath([norm, HOSTS_DIR]) == HOSTS_DIR
        assert posixpath.dirname(posixpath.dirname(norm)) == HOSTS_DIR
