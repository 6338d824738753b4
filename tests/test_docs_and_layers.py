"""Generated docs are current; the layering holds."""

from __future__ import annotations

from nodecfg.spec.reference import generate
from tests.conftest import REPO


def test_config_reference_is_current():
    current = (REPO / "docs/config-reference.md").read_text()
    assert current == generate(), "run: python -m nodecfg.spec.reference > docs/config-reference.md"
