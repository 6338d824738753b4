"""The command line: exit codes, JSON, colour, help, and that secrets never reach any output."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from nodecfg.cli import EXIT_BROKEN_PIPE
from tests.conftest import REPO, node_args, run
from tests.test_apply import copy_example

SECRETS = ("example-harbor-password", "example-pull-password", "S3cr3t-from-env")


def test_diff_exit_codes_and_json(root, tmp_path):
    config = copy_example(tmp_path, "registries.yaml")
    rc, out, _ = run("diff", "-o", "json", *node_args(root, config))
    assert rc == 1
    report = json.loads(out)
    assert report["restartRequired"] is True and report["inSync"] is False
    assert {op["class"] for op in report["operations"]} == {"hot", "cold"}
    assert report["target"] == {"containerd": "1.6.20", "source": "flag"}
    assert run("apply", *node_args(root, config))[0] == 0
    rc, out, _ = run("diff", "-o", "json", *node_args(root, config))
    assert rc == 0 and json.loads(out)["inSync"] is True


def test_colour_only_when_asked_and_never_with_no_color(root, tmp_path):
    config = copy_example(tmp_path, "plain-http.yaml")
    assert "\033[" not in run("diff", *node_args(root, config))[1]
    assert "\033[32m" in run("diff", "--color", "always", *node_args(root, config))[1]
    assert "\033[" not in run("diff", *node_args(root, config), env={"NO_COLOR": "1"})[1]


def test_missing_config_file_is_a_clear_error(root, tmp_path):
    rc, _, err = run("diff", *node_args(root, tmp_path / "nope.yaml"))
    assert rc == 2
    assert f"read {tmp_path / 'nope.yaml'}: no such file" in err


def test_config_from_environment_variable(root, tmp_path):
    config = copy_example(tmp_path, "plain-http.yaml")
    rc, out, _ = run("validate", "--root", str(root), "--containerd-version", "1.6.20", env={"NODECFG_CONFIG": str(config)})
    assert rc == 0 and "valid nodecfg input (1 registries" in out


def test_missing_referenced_file_names_field_and_path(root, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("version: 1\ncredentials:\n  - {registry: r.example, username: u, passwordFile: /nonexistent/pw}\n")
    rc, _, err = run("validate", *node_args(root, config))
    assert rc == 2
    assert "credentials[0].passwordFile: cannot read '/nonexistent/pw': no such file" in err


def test_render_writes_into_out_dir_not_the_node(root, tmp_path):
    out_dir = tmp_path / "out"
    before = sorted(p.name for p in root.rglob("*"))
    rc, _out, _ = run("render", "--out", str(out_dir), *node_args(root, copy_example(tmp_path, "dockerhub-mirror.yaml")))
    assert rc == 0
    assert (out_dir / "etc/containerd/certs.d/docker.io/hosts.toml").exists()
    assert sorted(p.name for p in root.rglob("*")) == before


def test_help_and_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "nodecfg", "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("diff", "apply", "render", "validate"):
        assert cmd in out


HEAVY = ("grpc", "jeepney")  # CRI and D-Bus: only run, images, doctor and uninstall need them
LOADED = """
import io, json, sys
from nodecfg.cli import main
rc = main(sys.argv[2:], io.StringIO(), io.StringIO())
for name in filter(None, sys.argv[1].split(",")):
    __import__(name)
print(json.dumps([rc, sorted(m for m in sys.modules if m.split(".")[0] in {heavy})]))
"""


def heavy_modules_after(argv: list[str], also_import: str = "") -> tuple[int, list[str]]:
    """Run main(argv), then import `also_import` (comma-separated), in a fresh interpreter: exit code, grpc/jeepney modules."""
    script = LOADED.format(heavy=set(HEAVY))
    r = subprocess.run([sys.executable, "-c", script, also_import, *argv], capture_output=True, text=True, cwd=REPO, check=True)
    rc, loaded = json.loads(r.stdout)
    return rc, loaded


@pytest.mark.parametrize(("command", "exit_code"), [("diff", 1), ("validate", 0), ("apply", 0)])
def test_one_shot_commands_do_not_import_grpc_or_jeepney(command, exit_code, root, tmp_path):
    config = copy_example(tmp_path, "registries.yaml")
    assert heavy_modules_after([command, *node_args(root, config)]) == (exit_code, [])


def test_the_import_check_sees_grpc_and_jeepney(root, tmp_path):
    # The modules that use the defaults the parser shows load both.
    config = copy_example(tmp_path, "registries.yaml")
    rc, loaded = heavy_modules_after(["validate", *node_args(root, config)], "nodecfg.node.cri,nodecfg.node.restart")
    assert rc == 0 and {m.split(".")[0] for m in loaded} == set(HEAVY)


@pytest.mark.parametrize("command", ["diff", "apply", "validate", "diff-json", "apply-json", "bad-input", "missing-env"])
def test_secrets_never_in_output_or_logs(command, root, tmp_path, monkeypatch):
    monkeypatch.setattr("nodecfg.cli.configure_logging", lambda _stream: None)  # keep capture_logs in place
    config = copy_example(tmp_path, "registries.yaml")
    text = config.read_text() + "  - registry: env.example\n    username: u\n    password: ${REG_PW}\n"
    env = {"REG_PW": "S3cr3t-from-env"}
    if command == "bad-input":
        text += "registriez: {}\n"
    if command == "missing-env":
        env = {}
    config.write_text(text)
    argv = command.split("-json")[0] if command not in ("bad-input", "missing-env") else "apply"
    extra = ["-o", "json"] if command.endswith("-json") else []
    with structlog.testing.capture_logs() as logs:
        rc, out, err = run(argv, *extra, *node_args(root, config), env=env)
    everything = out + err + json.dumps(logs, default=str)
    for secret in SECRETS:
        assert secret not in everything
    if command in ("diff", "diff-json"):
        assert "<redacted>" in out
    if command in ("bad-input", "missing-env"):
        assert rc == 2
    if command == "missing-env":
        assert "environment variable REG_PW is not set" in err
    if command == "apply":
        # The secrets did reach the one place they must: config.toml.
        assert "S3cr3t-from-env" in (root / "etc/containerd/config.toml").read_text()
        assert any(e["event"] == "apply" for e in logs)


def piped(argv: list[str], reader: str, tmp_path: Path) -> tuple[int, str]:
    """Run `python -m nodecfg ARGV | READER` through a real shell pipe; nodecfg's exit code and stderr."""
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "nodecfg", *argv])
    err, rc = tmp_path / "stderr", tmp_path / "rc"
    script = f"{{ {command} 2>{shlex.quote(str(err))}; echo $? >{shlex.quote(str(rc))}; }} | {reader} >/dev/null"
    subprocess.run(["sh", "-c", script], cwd=REPO, check=True, timeout=120)
    return int(rc.read_text()), err.read_text()


def test_diff_into_a_closed_pipe_exits_quietly(root, tmp_path):
    config = tmp_path / "many.yaml"  # a diff of ~200 KB: far more than a pipe holds once head has gone
    config.write_text("version: 1\nregistries:\n" + "".join(f"  r{i}.example: {{mirrors: [m{i}.example]}}\n" for i in range(600)))
    assert piped(["diff", *node_args(root, config)], "head -1", tmp_path) == (EXIT_BROKEN_PIPE, "")


def test_explain_into_a_closed_pipe_exits_quietly(root, tmp_path):
    # head -n 0 exits before nodecfg writes its few lines, so every write meets a closed pipe.
    argv = ["explain", "--root", str(root), "--containerd-version", "1.6.20", "nginx"]
    assert piped(argv, "head -n 0", tmp_path) == (EXIT_BROKEN_PIPE, "")
