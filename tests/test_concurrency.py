"""A daemon, ten manual applies and kubelet's ConfigMap swaps on one node, then uninstall (finding 1 of #13).

Real processes (the lock is an flock between them), a temp root, no containerd: the daemon runs
with `--restart-method none`, so config.toml changes stay pending instead of restarting anything.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from nodecfg.node.lock import StateLock, Waiting
from tests.conftest import EXAMPLES, REPO, lived_in, node_args, run, whole_tree
from tests.e2e.kube import KubeletVolume

STATE = "var/lib/nodecfg"
SECRETS = {name: (EXAMPLES / "secrets" / name).read_bytes() for name in ("ca.crt", "harbor-password")}
INPUTS = [
    "version: 1\nregistries:\n  docker.io:\n    mirrors: [https://mirror.corp.example]\n",
    "version: 1\nregistries:\n  docker.io:\n    mirrors: [https://mirror-b.corp.example]\n  quay.io:\n    caFile: ca.crt\n"
    "credentials:\n  - registry: quay.io\n    username: robot\n    passwordFile: harbor-password\n"
    "hostAliases:\n  - ip: 10.0.0.5\n    hostnames: [quay.io]\n",
    "version: 1\nregistries:\n  '*':\n    mirrors: [https://everything.corp.example]\n  10.0.0.5:5000:\n    plainHTTP: true\n",
]


def nodecfg(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "nodecfg", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )


def outcomes(procs: list[subprocess.Popen[str]]) -> list[tuple[int, str]]:
    return [(p.returncode, p.communicate(timeout=120)[1]) for p in procs]


def swap_while_running(vol: KubeletVolume, procs: list[subprocess.Popen[str]], swaps: list[str]) -> None:
    for text in swaps:
        time.sleep(0.15)
        vol.update({"registries.yaml": text, **SECRETS})
    for p in procs:
        p.wait(timeout=120)


def test_daemon_applies_and_swaps_share_the_node_and_uninstall_gives_it_back(tmp_path: Path) -> None:
    root = tmp_path / "node"
    shutil.copytree(EXAMPLES / "node", root)
    original = whole_tree(lived_in(root))
    vol = KubeletVolume(tmp_path / "configmap")
    vol.update({"registries.yaml": INPUTS[0], **SECRETS})
    config = str(vol.d / "registries.yaml")
    args = node_args(root, config)
    log = tmp_path / "daemon.log"
    with open(log, "w") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "nodecfg", "run", *args, "--restart-method", "none", "--listen", "none", "--resync", "1h"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        deadline = time.monotonic() + 60
        while not (root / STATE / "status.json").exists():  # the first reconcile is done
            assert daemon.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)

        # Ten applies and three diffs at once, with the daemon and ConfigMap swaps racing them: each
        # apply either changes the node or says who holds it; nothing crashes.
        applies = [nodecfg("apply", *args) for _ in range(10)]
        diffs = [nodecfg("diff", *args, "--color", "never") for _ in range(3)]
        swap_while_running(vol, applies + diffs, [INPUTS[1], INPUTS[2], INPUTS[1]])
        results = outcomes(applies)
        for rc, err in results:
            assert "Traceback" not in err, err
            assert rc == 0 or (rc == 2 and "/lock is held by pid " in err and "--wait" in err), err
        for rc, err in outcomes(diffs):
            assert rc in (0, 1) and "Traceback" not in err, err

        # With --wait they queue: held by this test at first, so every one of them waits its turn.
        with StateLock(str(root / STATE), "concurrency test", wait=Waiting.up_to(60)):
            waiting = [nodecfg("apply", *args, "--wait") for _ in range(10)]
            vol.update({"registries.yaml": INPUTS[2], **SECRETS})
            time.sleep(1.0)
            assert all(p.poll() is None for p in waiting)
        swap_while_running(vol, waiting, [INPUTS[0]])
        for rc, err in outcomes(waiting):
            assert rc == 0 and "Traceback" not in err, err
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    assert daemon.returncode == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text() and "internal-error" not in log.read_text()

    # What is on the node is exactly what the last input renders, so nothing was forgotten...
    rc, out, err = run("apply", *args)
    assert rc == 0, err
    assert run("diff", *args)[0] == 0
    assert not list(root.rglob("*.nodecfg-tmp")) and not (root / STATE / "journal.json").exists()
    # ... and uninstall takes every bit of it off again.
    rc, out, err = run("uninstall", *args, "--restart-method", "none")
    assert rc == 0, err
    assert whole_tree(root) == original, out
    assert not os.path.exists(root / STATE)
