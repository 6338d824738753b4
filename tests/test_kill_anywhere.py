"""Property: kill `apply` or `uninstall` at any step, and the next run plus `uninstall` give the node back exactly.

How the kill is injected: every call that changes the file tree (mkdir, rmdir, unlink, rename,
creating a file, truncating one) is counted while the command runs in this process; at call N it
raises `Killed` instead, and every such call after it raises too, so `finally` and `except`
blocks can no more change the node than a SIGKILLed process could. That puts a kill point
before each step of the plan, the staging of each temp file and directory, both journal
entries, each rename and delete, the state file and the state dir's removal, which named
failpoints in a subprocess (dozens of Python starts per example) could not afford on every commit.
A write into a temp file that already exists is not a kill point: a kill before it and a kill
after it leave the same names, and that temp file's content is never read (recovery removes it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from tests.conftest import EXAMPLES, lived_in, node_args, run, whole_tree

WRITE_FLAGS = os.O_CREAT | os.O_TRUNC
CHANGES_THE_TREE = ("mkdir", "rmdir", "unlink", "remove", "rename", "replace", "ftruncate", "symlink")
REGISTRY_VARIANTS = [
    {"mirrors": ["https://mirror.corp.example"]},
    {"plainHTTP": True},
    {"skipVerify": True},
    {"caFile": "secrets/ca.crt"},
    {"caFile": "secrets/ca.crt", "clientCertFile": "secrets/tls.crt", "clientKeyFile": "secrets/tls.key"},
]
LEGACY = '\n[plugins."io.containerd.grpc.v1.cri".registry.mirrors."quay.io"]\n  endpoint = ["https://quay-mirror.example"]\n'


class Killed(BaseException):  # not Exception: no `except Exception` in nodecfg may outlive a kill
    """The process died here: nothing after this point reaches the disk."""


class Reaper:
    """Counts the calls that change the file tree; the call numbered `at` and every one after it raise Killed."""

    def __init__(self, at: int | None) -> None:
        self.at = at
        self.calls = 0
        self.dead = False

    def _step(self) -> None:
        if self.dead or self.calls == self.at:
            self.dead = True
            raise Killed
        self.calls += 1

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def changing(*a: Any, **k: Any) -> Any:
            self._step()
            return fn(*a, **k)

        return changing

    def wrap_open(self, fn: Callable[..., int]) -> Callable[..., int]:
        def opening(path: Any, flags: int, *a: Any, **k: Any) -> int:
            if flags & WRITE_FLAGS:
                self._step()
            return fn(path, flags, *a, **k)

        return opening


@contextmanager
def killed_at(at: int | None) -> Iterator[Reaper]:
    reaper = Reaper(at)
    saved = {name: getattr(os, name) for name in (*CHANGES_THE_TREE, "open")}
    try:
        for name in CHANGES_THE_TREE:
            setattr(os, name, reaper.wrap(saved[name]))
        os.open = reaper.wrap_open(saved["open"])
        yield reaper
    finally:
        for name, fn in saved.items():
            setattr(os, name, fn)


def make_node(d: Path, node: dict[str, bool]) -> Path:
    root = d / "node"
    shutil.copytree(EXAMPLES / "node", root)
    lived_in(root)
    config = root / "etc/containerd/config.toml"
    if node["legacy"]:
        config.write_text(config.read_text() + LEGACY)
    if node["foreign"]:
        theirs = root / "etc/containerd/certs.d/docker.io"
        theirs.mkdir(parents=True)
        (theirs / "hosts.toml").write_text('server = "https://registry-1.docker.io"\n[host."https://theirs.example"]\n')
    return root


def write_input(d: Path, name: str, doc: dict[str, Any]) -> Path:
    if not (d / "secrets").exists():
        shutil.copytree(EXAMPLES / "secrets", d / "secrets")
    p = d / name
    p.write_text(yaml.safe_dump(doc))
    return p


def cli(command: str, root: Path, config: Path, *, at: int | None = None) -> tuple[int | None, Reaper]:
    extra = ("--restart-method", "none") if command == "uninstall" else ()
    with killed_at(at) as reaper:
        try:
            rc, _out, err = run(command, *node_args(root, config), *extra)
        except Killed:
            return None, reaper
    assert rc == 0, err
    return rc, reaper


registries = st.dictionaries(
    st.sampled_from(["docker.io", "quay.io", "10.0.0.5:5000", "harbor.corp.example", "*"]),
    st.sampled_from(REGISTRY_VARIANTS),
    max_size=3,
)
inputs = (
    st.fixed_dictionaries(
        {"registries": registries, "credentials": st.booleans(), "hostAliases": st.booleans()},
    )
    .filter(
        # `*` cannot be plain HTTP (its implicit upstream is every registry's): such an input is
        # refused and writes nothing, so it has no steps to kill.
        lambda g: g["registries"].get("*", {}).get("plainHTTP") is not True
    )
    .map(
        lambda g: {
            "version": 1,
            "registries": g["registries"],
            "credentials": [{"registry": "harbor.corp.example", "username": "robot", "passwordFile": "secrets/harbor-password"}]
            if g["credentials"]
            else [],
            "hostAliases": [{"ip": "10.0.0.5", "hostnames": ["harbor.corp.example"]}] if g["hostAliases"] else [],
        }
    )
)
nodes = st.fixed_dictionaries({"legacy": st.booleans(), "foreign": st.booleans()})


def kill_every_step(template: Path, command: str, config: Path, then_apply: Path | None) -> int:
    """Run `command` on a copy of `template` to count its steps, then on a fresh copy killed at each; return the count.

    `template` holds the node (`node`, maybe after a first apply) and the node before nodecfg
    (`node.pristine`), which the next run (`then_apply`, if any) plus `uninstall` must give back.
    """
    pristine = whole_tree(template / "node.pristine")
    before = whole_tree(template / "node")
    steps = None
    for at in [None, *range(1000)]:
        d = template.with_name(f"{template.name}-{command}-{at}")
        shutil.copytree(template, d, symlinks=True)
        root = d / "node"
        assert whole_tree(root) == before
        rc, reaper = cli(command, root, config, at=at)
        if at is None:
            steps = reaper.calls
            continue
        assert rc is None, f"step {at} of {steps} was not reached"
        if then_apply is not None:
            cli("apply", root, then_apply)
            assert run("diff", *node_args(root, then_apply))[0] == 0, f"not in sync after a kill at step {at}"
        cli("uninstall", root, config)
        assert whole_tree(root) == pristine, f"{command} killed at step {at} of {steps}: the node is not as before nodecfg"
        shutil.rmtree(d)
        if at + 1 == steps:
            return steps
    raise AssertionError("more than 1000 steps")


@contextmanager
def no_fsync() -> Iterator[None]:
    """fsync only matters when the power goes; these are process kills. It costs a third of the time."""
    saved = os.fsync
    os.fsync = lambda _fd: None
    try:
        yield
    finally:
        os.fsync = saved


RICH_NODE = {"legacy": True, "foreign": True}
RICH_INPUT = {
    "version": 1,
    "registries": {"docker.io": REGISTRY_VARIANTS[0], "harbor.corp.example": REGISTRY_VARIANTS[4], "*": REGISTRY_VARIANTS[3]},
    "credentials": [{"registry": "harbor.corp.example", "username": "robot", "passwordFile": "secrets/harbor-password"}],
    "hostAliases": [{"ip": "10.0.0.5", "hostnames": ["harbor.corp.example"]}],
}
SMALL_INPUT = {"version": 1, "registries": {"10.0.0.5:5000": {"plainHTTP": True}}, "credentials": [], "hostAliases": []}


# No shrinking: an example runs the commands a hundred times or more, so shrinking a failure
# would take minutes; the failure message names the command and the step instead.
@settings(
    max_examples=2,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(node=nodes, first=st.one_of(st.none(), inputs), second=inputs, next_is_apply=st.booleans())
# Every run covers the richest plan: foreign files and legacy mirrors kept, credentials (config.toml
# 0600), host aliases, new directories, then most of it deleted again.
@example(node=RICH_NODE, first=RICH_INPUT, second=SMALL_INPUT, next_is_apply=True)
@example(node=RICH_NODE, first=None, second=RICH_INPUT, next_is_apply=False)
def test_a_kill_at_any_step_of_apply_or_uninstall_is_undone_by_the_next_run_and_uninstall(
    tmp_path_factory: Any, node: dict[str, bool], first: dict[str, Any] | None, second: dict[str, Any], next_is_apply: bool
) -> None:
    tmp = tmp_path_factory.mktemp("kill")
    first_config = write_input(tmp, "first.yaml", first) if first is not None else None
    second_config = write_input(tmp, "second.yaml", second)
    then_apply = second_config if next_is_apply else None
    template = tmp / "installed"
    root = make_node(template, node)
    shutil.copytree(root, template / "node.pristine", symlinks=True)
    with no_fsync():
        if first_config is not None:
            cli("apply", root, first_config)
        # apply killed, on the node before nodecfg or over the first input
        steps = kill_every_step(template, "apply", second_config, then_apply)
        # lock, journal, staging, renames; an apply of the input already there only takes the lock
        assert steps > 10 if first != second else steps >= 1
        # uninstall killed, after the second input was applied
        cli("apply", root, second_config)
        kill_every_step(template, "uninstall", second_config, then_apply)
