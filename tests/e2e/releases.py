"""Which containerd release the e2e suite runs, and how releases differ, written as data.

The suite runs once per release, with that release as the node's `/usr/bin/containerd`
(`scripts/e2e` bind-mounts it in a private mount namespace). Tests never skip on a release: where
releases behave differently, the test asks the `Release` what to expect.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass

from nodecfg.containerd.versions import ContainerdVersion

V1_7 = ContainerdVersion(1, 7, 0)
V1_7_32 = ContainerdVersion(1, 7, 32)
V2_0 = ContainerdVersion(2, 0, 0)
V2_1 = ContainerdVersion(2, 1, 0)
V2_2 = ContainerdVersion(2, 2, 0)
V2_3 = ContainerdVersion(2, 3, 0)

# The registry table of each config.toml shape (reference: docs/containerd.md, config.toml).
REGISTRY_TABLE = {
    "v2": 'plugins."io.containerd.grpc.v1.cri".registry',
    "v3": 'plugins."io.containerd.cri.v1.images".registry',
    "v4": 'plugins."io.containerd.cri.v1.images".registry',
}


@dataclass(frozen=True)
class Release:
    """One containerd release and what the suite expects of it."""

    version: ContainerdVersion

    @property
    def name(self) -> str:
        return str(self.version)

    @property
    def shapes(self) -> tuple[str, ...]:
        """config.toml shapes a node of this release runs: v2 everywhere, v3 on 2.x (1.x ignores it),
        v4 on 2.3+ (what their `config default` writes; 2.0-2.2 refuse it)."""
        if self.version >= V2_3:
            return ("v2", "v3", "v4")
        return ("v2", "v3") if self.version >= V2_0 else ("v2",)

    @property
    def highest_config_version(self) -> int:
        """The highest config.toml `version` the release loads (observed: 2.0.11 refuses 4)."""
        return 4 if self.version >= V2_3 else 3 if self.version >= V2_0 else 2

    @property
    def reads_leftover_registry_table(self) -> bool:
        """A version 3 file's leftover `io.containerd.grpc.v1.cri` registry table wins over its
        `io.containerd.cri.v1.images` one on 2.3.4 and 2.4.0-beta.0; 2.0.11 ignores it (observed)."""
        return self.version >= V2_3

    @property
    def reads_version_1_registry_table(self) -> bool:
        """A version 1 file's `plugins.cri.registry`: read by 1.x and 2.3+, dropped by 2.0-2.2 (observed)."""
        return not (V2_0 <= self.version < V2_3)

    @property
    def reports_config_path_over_cri(self) -> bool:
        """1.x puts its CRI registry config in the verbose Status; 2.x's holds only runtime settings."""
        return self.version < V2_0

    @property
    def reads_root_only_hosts_toml(self) -> bool:
        """A hosts.toml without any [host] table: 'invalid `host` tree' until 1.7.32 and 2.0."""
        return self.version >= V1_7_32

    @property
    def honours_dial_timeout(self) -> bool:
        return self.version >= V2_1

    @property
    def reads_referrers_capability(self) -> bool:
        """The `referrers` capability (2.2+); older releases refuse the whole hosts.toml for it."""
        return self.version >= V2_2

    @property
    def pulls_through_transfer_service(self) -> bool:
        """2.1+: CRI pulls go through the transfer service unless deprecated registry settings
        (`mirrors`, `configs`, `auths`) or `use_local_image_pull` send them down the local path."""
        return self.version >= V2_1

    @property
    def splits_config_path_list(self) -> bool:
        """Whether a CRI pull on a node with no registry credentials reads every root of a
        `config_path` list: 2.1+'s transfer-service path takes the list as one directory
        (containerd#12415, #12636)."""
        return not self.pulls_through_transfer_service

    @property
    def no_credentials_error(self) -> str:
        """What a CRI pull from a basic-auth registry says without credentials (observed)."""
        return "no basic auth credentials" if self.version >= V1_7 else "401 Unauthorized"

    @property
    def version_3_file(self) -> str:
        """What the release does with a `version = 3` config.toml (observed): 1.6 loads it and
        ignores its v3 tables without a word, 1.7 refuses to load it, 2.x reads it."""
        if self.version >= V2_0:
            return "read"
        return "refused" if self.version >= V1_7 else "ignored"

    @property
    def ctr_pull_flags(self) -> tuple[str, ...]:
        """`ctr images pull` on 2.x goes through the transfer service; `--local` is the old path,
        which honours `--snapshotter native` and `--hosts-dir` as 1.x does."""
        return ("--local",) if self.version >= V2_0 else ()


@functools.cache
def current() -> Release:
    """The release of the `containerd` on PATH (the node's own, or the one bind-mounted over it)."""
    exe = shutil.which("containerd")
    if exe is None:
        raise RuntimeError("no containerd on PATH")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True, timeout=30).stdout
    # "containerd github.com/containerd/containerd/v2 2.1.9+unknown": the token after the module path
    return Release(ContainerdVersion.parse(out.split()[2]))
