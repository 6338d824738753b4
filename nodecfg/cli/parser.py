"""The command line's grammar: every command, option, default and help text, in argparse."""

from __future__ import annotations

import argparse
import os
import socket
from typing import Any, TypeAlias

from nodecfg import __version__
from nodecfg.node.defaults import DEFAULT_SYSTEM_BUS, DEFAULT_UNIT
from nodecfg.node.lock import DEFAULT_WAIT_S
from nodecfg.node.paths import NodePaths
from nodecfg.spec.formats import FORMATS

DEFAULT_CONFIG = "/etc/nodecfg/registries.yaml"
DEFAULT_WAIT_TIMEOUT = f"{DEFAULT_WAIT_S / 60:g}m"
_PATHS = NodePaths()  # the path defaults

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value else default


def _setting(
    g: argparse._ActionsContainer,
    flag: str,
    what: str,
    *,
    env: str | None = None,
    default: str | None = None,
    shown: str | None = None,
    **kw: Any,
) -> None:
    """An option whose default may come from the environment; the help names the variable and the default.

    `shown` describes a default that is not a plain value ("detected from the node").
    """
    notes = [f"env {env}"] if env else []
    if shown:
        notes.append(f"default: {shown}")
    elif default is not None:
        notes.append("default %(default)s")
    g.add_argument(
        flag,
        default=_env(env, default) if env else default,
        help=what + (f" ({'; '.join(notes)})" if notes else ""),
        **kw,
    )


def _input_options() -> argparse.ArgumentParser:
    """Options of every command: the input, the node's paths, the containerd release, the output."""
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("input and node")
    _setting(g, "--config", "input file", env="NODECFG_CONFIG", default=DEFAULT_CONFIG)
    _setting(g, "--root", "where the host's / is mounted", env="NODECFG_ROOT", default=_PATHS.root)
    _setting(g, "--containerd-config", "containerd's config.toml, as a host path", default=_PATHS.containerd_config)
    _setting(g, "--hosts-dir", "containerd's config_path for hosts.toml, as a host path", default=_PATHS.hosts_dir)
    _setting(g, "--state-dir", "nodecfg's state, as a host path", env="NODECFG_STATE_DIR", default=_PATHS.state_dir)
    _setting(
        g,
        "--containerd-version",
        "render for this containerd release",
        env="NODECFG_CONTAINERD_VERSION",
        shown="detected from the node",
    )
    _setting(
        g,
        "--format",
        "the input's format: nodecfg's registries.yaml, a k3s/RKE2 registries.yaml, a .dockerconfigjson, "
        "an image-sync auth.json, or image-replacement rules",
        env="NODECFG_FORMAT",
        default="auto",
        shown="detected",
        dest="input_format",
        choices=["auto", *FORMATS],
    )
    _setting(
        g,
        "--containerd-socket",
        "containerd's socket, as a host path: its release (CRI Version), health and images",
        env="NODECFG_CONTAINERD_SOCKET",
        shown=f"the gRPC address config.toml sets (version 4: in io.containerd.server.v1.grpc), else {_PATHS.containerd_socket}",
    )
    g.add_argument("-o", "--output", choices=["text", "json"], default="text", help="output format (default %(default)s)")
    return common


def _restart_options() -> argparse.ArgumentParser:
    """Options of the commands that may restart containerd (`run`, `uninstall`)."""
    restart_opts = argparse.ArgumentParser(add_help=False)
    g = restart_opts.add_argument_group("restarting containerd")
    _setting(
        g,
        "--restart-method",
        "how to restart containerd: the host systemd over D-Bus, --restart-command, or never",
        env="NODECFG_RESTART_METHOD",
        default="systemd",
        choices=["systemd", "command", "none"],
    )
    _setting(
        g,
        "--restart-command",
        "argv for --restart-method command, shell-quoted, e.g. 'nsenter -t 1 -m -u -i -n -p -- systemctl restart containerd'",
        env="NODECFG_RESTART_COMMAND",
    )
    _setting(g, "--systemd-bus", "the host's D-Bus system bus socket, as a host path", default=DEFAULT_SYSTEM_BUS)
    _setting(g, "--containerd-unit", "systemd unit to restart", default=DEFAULT_UNIT)
    return restart_opts


def _lock_options() -> argparse.ArgumentParser:
    """Options of the commands that take the node lock (`apply`, `run`, `uninstall`)."""
    lock_opts = argparse.ArgumentParser(add_help=False)
    g = lock_opts.add_argument_group("another nodecfg on this node")
    g.add_argument(
        "--wait",
        action="store_true",
        help="queue behind another nodecfg that holds the node lock (run: another daemon) instead of exiting with 2",
    )
    _setting(
        g,
        "--wait-timeout",
        "give up waiting after this long; 0: no limit (SIGTERM/SIGINT always end the wait)",
        env="NODECFG_WAIT_TIMEOUT",
        default=DEFAULT_WAIT_TIMEOUT,
    )
    return lock_opts


def _add_node_commands(sub: Subparsers, common: argparse.ArgumentParser, lock_opts: argparse.ArgumentParser) -> None:
    """The commands on the node's files: diff, apply, render, validate, convert."""
    p = sub.add_parser("diff", parents=[common], help="show what apply would change (exit 0 in sync, 1 differs, 2 error)")
    p.add_argument(
        "--color",
        choices=["auto", "always", "never"],
        default="auto",
        help="colour the diff (auto: on a terminal, unless NO_COLOR)",
    )
    p = sub.add_parser("apply", parents=[common, lock_opts], help="write the changes to the node")
    p.add_argument(
        "--restart",
        choices=["never"],
        default="never",
        help="restart containerd when config.toml changed: only 'never' so far (apply reports that a restart is required)",
    )
    p = sub.add_parser(
        "render", parents=[common], help="write the files nodecfg would write into a directory instead of the node"
    )
    p.add_argument("--out", required=True, help="directory to write into (host paths below it)")
    sub.add_parser("validate", parents=[common], help="check the input and what it refers to; change nothing")
    sub.add_parser(
        "convert",
        parents=[common],
        help="print a k3s registries.yaml, .dockerconfigjson, auth.json or image-replacement rules as nodecfg's registries.yaml",
    )


def _add_daemon_commands(sub: Subparsers, writers: list[argparse.ArgumentParser]) -> None:
    """The daemon's commands: run and status (`writers`: the option groups of the commands that write the node)."""
    common = writers[0]
    p = sub.add_parser(
        "run",
        parents=writers,
        help="the daemon: follow the input, apply hot changes at once, restart containerd safely for cold ones",
    )
    _setting(
        p,
        "--node-name",
        "this node's name, for the restart spread",
        env="NODE_NAME",
        default=socket.gethostname(),
        shown="the host name",
    )
    _setting(p, "--resync", "re-check the node this often even without changes", default="5m")
    _setting(p, "--listen", "address for /healthz, /readyz and /metrics, or 'none'", env="NODECFG_LISTEN", default=":9808")
    sub.add_parser("status", parents=[common], help="what the daemon did last (from the state dir)")


def _add_oncall_commands(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """The on-call commands: explain, images, doctor."""
    p = sub.add_parser(
        "explain",
        parents=[common],
        help="where containerd on this node will pull IMAGE from, and why (reads the node's files, owned or not)",
    )
    p.add_argument("image", metavar="IMAGE", help="an image reference as a pod spec writes it, e.g. nginx or reg:5000/team/app:1")
    p = sub.add_parser(
        "images",
        parents=[common],
        help="list the node's images (CRI) and write an image-sync images.json mapping each to a mirror",
    )
    p.add_argument(
        "--mirror",
        help="HOST[:PORT][/NAMESPACE] to map every image to (default: each registry's first mirror in --config)",
    )
    p.add_argument("--registry", action="append", default=[], help="only images from this registry (repeatable)")
    p.add_argument("--out", help="write images.json here (default: stdout)")
    p = sub.add_parser(
        "doctor",
        parents=[common],
        help="check containerd, its registry config, every hosts.toml and every registry endpoint "
        "(exit 0 no failures, 1 failures, 2 could not check)",
    )
    p.add_argument("--no-cri", action="store_true", help="do not ask containerd's CRI plugin for its health")
    p.add_argument("--no-network", action="store_true", help="do not resolve or connect to registries")
    p.add_argument(
        "--probe-timeout", type=float, default=3.0, help="seconds for each DNS/TCP/TLS/HTTP probe (default %(default)s)"
    )


def _add_uninstall(sub: Subparsers, writers: list[argparse.ArgumentParser]) -> None:
    """The uninstall command, listed last."""
    p = sub.add_parser(
        "uninstall",
        parents=writers,
        help="take nodecfg off the node: remove its files, restore the originals it kept, undo its config.toml edits",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would be done; change nothing")
    p.add_argument(
        "--force-original",
        action="store_true",
        help="restore config.toml exactly as it was before nodecfg, even if it was edited since",
    )
    p.add_argument(
        "--hold",
        action="store_true",
        help="after uninstalling, stay up until SIGTERM (for a DaemonSet that runs uninstall on every node)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of `nodecfg COMMAND [options]`; the commands are added in the order `--help` lists them."""
    common, restart_opts, lock_opts = _input_options(), _restart_options(), _lock_options()
    parser = argparse.ArgumentParser(
        prog="nodecfg",
        description="Render, diff and apply containerd registry configuration (hosts.toml, config.toml) from one registries.yaml.",
    )
    parser.add_argument("--version", action="version", version=f"nodecfg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_node_commands(sub, common, lock_opts)
    writers = [common, restart_opts, lock_opts]  # input, restarting containerd, the node lock
    _add_daemon_commands(sub, writers)
    _add_oncall_commands(sub, common)
    _add_uninstall(sub, writers)
    return parser
