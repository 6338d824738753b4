"""Damaged state files (a re-imaged disk, a hand edit, a half-copied backup): a clear error naming the file, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import node_args, run

DAMAGED = [
    "[]",
    "null",
    '"x"',
    "garbage",
    '{"version": 1, "owned": [1, 2]}',
    '{"version": 1, "dirs": 5}',
    '{"version": 1, "legacy": {"mirrors": 5}}',
]


@pytest.mark.parametrize("content", DAMAGED)
@pytest.mark.parametrize("command", ["apply", "diff", "uninstall", "doctor"])
def test_a_damaged_state_json_is_named(root: Path, tmp_path: Path, content: str, command: str) -> None:
    config = tmp_path / "registries.yaml"
    config.write_text("version: 1\nregistries:\n  docker.io:\n    mirrors: [https://m.example]\n")
    state = root / "var/lib/nodecfg"
    state.mkdir(parents=True, exist_ok=True)
    (state / "state.json").write_text(content)
    extra = ["--restart-method", "none"] if command == "uninstall" else []
    rc, _out, err = run(command, *extra, *node_args(root, config, "1.7.24"))
    assert rc == 2
    assert "Traceback" not in err and f"{state}/state.json" in err
    assert (state / "state.json").read_text() == content  # nothing written over it


@pytest.mark.parametrize("content", ["[]", "null", "garbage"])
def test_a_damaged_status_json_is_named(root: Path, content: str) -> None:
    state = root / "var/lib/nodecfg"
    state.mkdir(parents=True, exist_ok=True)
    (state / "status.json").write_text(content)
    rc, _out, err = run("status", "--root", str(root))
    assert rc == 2 and "/var/lib/nodecfg/status.json is damaged" in err
