"""The containerd on this node as the daemon sees it: CRI health, who serves the socket, what it loaded.

`LiveContainerd` is the real `restarts.Containerd`; the restart tests give the state machine a fake.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Callable

import structlog

from nodecfg.containerd.config_toml import effective_target
from nodecfg.containerd.versions import ContainerdTarget, ContainerdVersion
from nodecfg.daemon.restarts import Running
from nodecfg.node.config_files import imported_files
from nodecfg.node.containerd import (
    DumpCheck,
    check_loaded,
    detect_target,
    find_binary,
    serving_pid,
    started_at,
    started_before_config,
)
from nodecfg.node.cri import CRIClient, Health, wait_healthy
from nodecfg.node.fs import NodeError, read_file
from nodecfg.node.paths import NodePaths
from nodecfg.node.reconcile import Prepared, check_effective
from nodecfg.plan.redaction import redact

log = structlog.get_logger("nodecfg")


class LiveContainerd:
    """Containerd through its CRI socket, its binary and /proc (see docs/daemon.md, "What happens on a change")."""

    def __init__(self, paths: NodePaths) -> None:
        self.paths = paths
        # What the node holds since the last apply: the credential hosts a restart check expects
        # in config.toml, and the secrets its messages must not show.
        self.auth_hosts: frozenset[str] = frozenset()
        self.secrets: frozenset[str] = frozenset()
        self._dump_cache: tuple[str, DumpCheck] | None = None
        # Only the import rules depend on it (a relative glob on 1.6): detected on first use.
        self._target: ContainerdTarget | None = None

    def socket(self) -> str:
        """The CRI socket, as this process opens it."""
        return self.paths.real(self.paths.containerd_socket)

    def health(self) -> Health:
        """Containerd's CRI health as kubelet would see it, plus the config_path it loaded (1.x)."""
        with CRIClient(self.socket(), timeout=5) as c:
            return c.health(timeout=5)

    def wait_healthy(self, timeout: float, good: Callable[[Health], bool], stop: Callable[[], bool]) -> Health:
        """Poll CRI health until `good`, `timeout` or `stop()`; the last answer."""
        return wait_healthy(self.socket(), timeout, good, stop=stop)

    def running(self) -> Running | None:
        """(pid, start time) of the process serving containerd's socket, if this process can see it."""
        pid = serving_pid(self.socket())
        since = started_at(pid)
        return None if pid is None or since is None else (pid, since)

    def _dump_check(self) -> DumpCheck:
        """`containerd config dump` of the config.toml on disk, with what it imports, with the node's binary.

        Checked in the table that binary reads; cached while the files, the binary and the auth
        hosts stay the same.
        """
        real = self.paths.real(self.paths.containerd_config)
        auth = self.auth_hosts
        try:
            content = read_file(real).content
            text = content.decode("utf-8") if content is not None else None
            imported = imported_files(self.paths, tomllib.loads(text or ""), self._release(text))
        except (NodeError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            return DumpCheck(True, (f"{self.paths.containerd_config}: {e}",))
        if text is None:
            return DumpCheck(True, (f"{self.paths.containerd_config}: no such file",))
        binary = find_binary(self.paths.root, self.socket())
        try:
            binary_id = f"{binary}@{os.stat(binary).st_mtime_ns}" if binary else ""
        except OSError:
            binary_id = ""
        key = hashlib.sha256(repr((text, imported, sorted(auth), binary_id)).encode()).hexdigest()
        if self._dump_cache is not None and self._dump_cache[0] == key:
            return self._dump_cache[1]
        check = check_loaded(binary, text, imported, self.paths, auth)
        self._dump_cache = (key, check)
        return check

    def _release(self, text: str | None) -> ContainerdVersion:
        """The release whose import rules apply: the one detected (once), raised to what the file's version needs."""
        if self._target is None:
            self._target = detect_target(self.paths, None)
        return effective_target(self._target, text or "").version

    def not_loaded(self, h: Health, *, restarted: bool) -> str | None:
        """Why containerd does not run with what nodecfg wrote (None: it does).

        Holds on every release: CRI ready; the config_path that 1.x reports over CRI; `config dump`
        of the file on disk showing our config_path and credential hosts in the table this release
        reads (2.x reports no registry config over CRI); and, unless the caller just restarted it,
        a containerd that started after config.toml was last written.
        """
        if not h.ready:
            return h.describe()
        if h.config_path is not None and self.paths.hosts_dir not in h.config_path.split(":"):
            return f"containerd runs with config_path {h.config_path!r}, not {self.paths.hosts_dir!r}"
        check = self._dump_check()
        if check.problems:
            return redact("; ".join(check.problems), self.secrets)
        if not restarted and h.config_path is None and started_before_config(self.paths):
            return "containerd started before config.toml was last written: it has not loaded it yet"
        return None

    def check_candidate(self, prepared: Prepared) -> str | None:
        """Load the desired config.toml with the host's containerd before writing it (None: fine or not checkable)."""
        check = check_effective(prepared)
        if not check.ran:
            log.info("candidate-check", skipped=check.note)
            return None
        return "; ".join(check.problems) or None
