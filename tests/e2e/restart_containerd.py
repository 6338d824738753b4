"""A `--restart-command` for the daemon tests: restart the test containerd in directory D.

    python -m tests.e2e.restart_containerd D [--break-on TEXT]

With --break-on, a config.toml that contains TEXT starts containerd with legacy `mirrors` added
next to `config_path`: containerd keeps running but its CRI plugin fails, as it does on a real
node with such a config. That is how the tests make a restart leave CRI unhealthy.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from tests.e2e.harness import Containerd
from tests.e2e.releases import REGISTRY_TABLE


def broken(config: str) -> str:
    """`config` plus legacy mirrors in the registry table its version reads (CRI refuses them
    next to config_path on every release)."""
    shape = f"v{tomllib.loads(config).get('version', 2)}"
    return config + f'\n[{REGISTRY_TABLE[shape]}.mirrors."broken.test"]\n  endpoint = ["http://broken.test"]\n'


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--break-on")
    args = ap.parse_args()
    cd = Containerd(Path(args.dir))
    cd.stop()
    config = cd.config.read_text()
    if args.break_on and args.break_on in config:
        path = cd.d / "broken-config.toml"
        path.write_text(broken(config))
        cd.start(config=path)
    else:
        cd.start()
    cd.proc = None  # it outlives this command, like a service systemd restarted
    return 0


if __name__ == "__main__":
    sys.exit(main())
