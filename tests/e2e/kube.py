"""What kubelet does to a ConfigMap or Secret volume, and a `nodecfg run` process to watch it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.e2e.harness import REPO, clean_env, free_port


class KubeletVolume:
    """A directory updated the way kubelet's AtomicWriter does it.

    The payload goes into a new hidden timestamped directory; a `..data_tmp` symlink to it is
    renamed over `..data` (the atomic step); each visible name is a symlink `name -> ..data/name`;
    then the previous timestamped directory is removed.
    """

    def __init__(self, d: Path) -> None:
        self.d = d
        d.mkdir(parents=True, exist_ok=True)
        self.updates = 0

    def update(self, files: dict[str, str | bytes]) -> None:
        old = os.readlink(self.d / "..data") if (self.d / "..data").is_symlink() else None
        self.updates += 1
        stamp = datetime.now(UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f") + f"_{self.updates}"
        ts = self.d / stamp
        ts.mkdir(mode=0o755)
        for name, content in files.items():
            p = ts / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content if isinstance(content, bytes) else content.encode())
        tmp = self.d / "..data_tmp"
        os.symlink(stamp, tmp)
        os.rename(tmp, self.d / "..data")
        for name in {n.split("/", 1)[0] for n in files}:
            link = self.d / name
            if not link.is_symlink():
                os.symlink(f"..data/{name}", link)
        if old:
            for p in sorted((self.d / old).rglob("*"), reverse=True):
                p.rmdir() if p.is_dir() else p.unlink()
            (self.d / old).rmdir()


class DaemonProcess:
    """`python -m nodecfg run ...` in the background, its probes, and its JSON log lines."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log = log
        self.args = [*args, "--listen", f"127.0.0.1:{self.port}"]
        self.env = {**clean_env(), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nodecfg", "run", *self.args], stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=REPO
            )

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return 0, str(e)

    def metric(self, name: str) -> float:
        code, text = self.get("/metrics")
        assert code == 200, text
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"no metric {name} in:\n{text}")

    def metric_labeled(self, name: str, **labels: str) -> float:
        """The sum of `name`'s samples that carry `labels` (all of them when none are given)."""
        code, text = self.get("/metrics")
        assert code == 200, text
        want = [f'{k}="{v}"' for k, v in labels.items()]
        samples = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{") and all(w in line.split("}", 1)[0] for w in want)
        ]
        assert samples, f"no metric {name} with {labels} in:\n{text}"
        return sum(samples)

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if isinstance(e, dict):
                out.append(e)
        return out

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"nodecfg run exited with {self.proc.returncode} while waiting for {what}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                if check():
                    return
            except (AssertionError, OSError):
                pass  # not there yet (e.g. the listener is not up)
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{self.log.read_text()[-3000:]}")

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.wait_for("/readyz 200", lambda: self.get("/readyz")[0] == 200, timeout)
