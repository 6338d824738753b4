"""What the commands share: exit codes, the node's paths and restarter from the options, the locks."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import structlog

from nodecfg.containerd.durations import parse_duration
from nodecfg.node.config_files import configured_socket
from nodecfg.node.fs import NodeError
from nodecfg.node.lock import LockWaitStopped, StateLock, Waiting
from nodecfg.node.paths import NodePaths

EXIT_OK, EXIT_DIFFERS, EXIT_ERROR = 0, 1, 2
log = structlog.get_logger("nodecfg")

if TYPE_CHECKING:
    from nodecfg.node.restart import Restarter


def paths_from(args: argparse.Namespace) -> NodePaths:
    """The node's paths as the input and node options give them.

    Without --containerd-socket, the socket is the gRPC address containerd's config.toml (and what
    it imports) sets, where containerd listens; else containerd's default.
    """
    paths = NodePaths(
        root=args.root, containerd_config=args.containerd_config, hosts_dir=args.hosts_dir, state_dir=args.state_dir
    )
    socket = args.containerd_socket or configured_socket(paths)
    return replace(paths, containerd_socket=socket) if socket else paths


def wait_timeout(args: argparse.Namespace) -> float:
    """--wait-timeout in seconds."""
    try:
        return parse_duration(args.wait_timeout).seconds
    except ValueError as e:
        raise NodeError(f"--wait-timeout {args.wait_timeout!r}: {e}") from None


@contextlib.contextmanager
def _signals_end_the_wait() -> Iterator[Callable[[], bool]]:
    """While queueing for a lock, SIGTERM/SIGINT end the wait with a message instead of a traceback."""
    stopped = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield stopped.is_set
        return
    old = {s: signal.signal(s, lambda _s, _f: stopped.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stopped.is_set
    finally:
        for s, h in old.items():
            if h is not None:
                signal.signal(s, h)


@contextlib.contextmanager
def holding(args: argparse.Namespace, paths: NodePaths, purpose: str, *names: str) -> Iterator[None]:
    """Hold the state dir's locks `names` (taken in this order) for the block; --wait queues behind holders."""
    with contextlib.ExitStack() as held:
        with _signals_end_the_wait() as stopped:
            wait = Waiting.up_to(wait_timeout(args), stopped) if args.wait else None
            for name in names:
                held.enter_context(StateLock(paths.real(paths.state_dir), purpose, name=name, wait=wait))
            if stopped():  # the signal came as the last lock was taken: still honour it
                raise LockWaitStopped("stopped by SIGTERM/SIGINT before anything was changed")
        yield


def restarter_from(args: argparse.Namespace, paths: NodePaths) -> Restarter:
    """The restart method the restart options ask for (`run` and `uninstall`)."""
    from nodecfg.node.restart import make_restarter  # noqa: PLC0415 (jeepney only when needed)

    try:
        command = shlex.split(args.restart_command) if args.restart_command else []
    except ValueError as e:
        raise NodeError(f"--restart-command {args.restart_command!r}: {e}") from None
    return make_restarter(
        args.restart_method, command=command, bus_socket=paths.real(args.systemd_bus), unit=args.containerd_unit
    )
