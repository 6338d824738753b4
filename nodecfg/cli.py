"""Command line: `nodecfg diff | apply | render | validate`. One `main(argv) -> int`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import structlog

from nodecfg import __version__
from nodecfg.containerd import names
from nodecfg.containerd.durations import DurationError, parse_duration
from nodecfg.containerd.errors import ConfigError
from nodecfg.node.fs import NodeError, atomic_write, make_dirs, read_file
from nodecfg.node.lock import DAEMON_LOCK, DEFAULT_WAIT_S, NODE_LOCK, LockWaitStopped, StateLock, Waiting
from nodecfg.node.paths import NodePaths
from nodecfg.node.reconcile import Prepared, apply, prepare, recover_node
from nodecfg.node.state import STATUS_FILE, daemon_mirrors, mirror_note
from nodecfg.plan import file_diff
from nodecfg.plan.redaction import redact
from nodecfg.spec.formats import FORMATS
from nodecfg.spec.loader import SpecError

EXIT_OK, EXIT_DIFFERS, EXIT_ERROR = 0, 1, 2
# The reader of our output went away: what a shell reports for a process killed by SIGPIPE
# (128 + 13), as for `git log | head -1`, and distinct from diff's 0/1/2.
EXIT_BROKEN_PIPE = 141
DEFAULT_CONFIG = "/etc/nodecfg/registries.yaml"
# Defaults of `run` (the modules that use them are imported only by `run`; tests check they agree).
DEFAULT_SOCKET = "/run/containerd/containerd.sock"
DEFAULT_SYSTEM_BUS = "/run/dbus/system_bus_socket"
DEFAULT_UNIT = "containerd.service"
UNINSTALL_HEALTH_TIMEOUT_S = 60.0  # the input's restart.healthTimeout default; uninstall has no input
DEFAULT_WAIT_TIMEOUT = f"{DEFAULT_WAIT_S / 60:g}m"
log = structlog.get_logger("nodecfg")

if TYPE_CHECKING:
    from nodecfg.node.restart import Restarter
    from nodecfg.node.uninstall import Uninstall


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value else default


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("input and node")
    g.add_argument(
        "--config", default=_env("NODECFG_CONFIG", DEFAULT_CONFIG), help="input file (env NODECFG_CONFIG; default %(default)s)"
    )
    g.add_argument(
        "--root", default=_env("NODECFG_ROOT", "/"), help="where the host's / is mounted (env NODECFG_ROOT; default %(default)s)"
    )
    g.add_argument(
        "--containerd-config",
        default="/etc/containerd/config.toml",
        help="containerd's config.toml, as a host path (default %(default)s)",
    )
    g.add_argument(
        "--hosts-dir",
        default="/etc/containerd/certs.d",
        help="containerd's config_path for hosts.toml, as a host path (default %(default)s)",
    )
    g.add_argument(
        "--state-dir",
        default=_env("NODECFG_STATE_DIR", "/var/lib/nodecfg"),
        help="nodecfg's state, as a host path (default %(default)s)",
    )
    g.add_argument(
        "--containerd-version",
        default=_env("NODECFG_CONTAINERD_VERSION"),
        help="render for this containerd release (default: detected from the node)",
    )
    g.add_argument(
        "--format",
        dest="input_format",
        choices=["auto", *FORMATS],
        default=_env("NODECFG_FORMAT", "auto"),
        help="the input's format: nodecfg's registries.yaml, a k3s/RKE2 registries.yaml, a .dockerconfigjson, "
        "an image-sync auth.json, or image-replacement rules (env NODECFG_FORMAT; default: detected)",
    )
    g.add_argument(
        "--containerd-socket",
        default=_env("NODECFG_CONTAINERD_SOCKET", DEFAULT_SOCKET),
        help="containerd's socket, as a host path: its release (CRI Version), health and images "
        "(env NODECFG_CONTAINERD_SOCKET; default %(default)s)",
    )
    g.add_argument("-o", "--output", choices=["text", "json"], default="text", help="output format (default %(default)s)")
    restart_opts = argparse.ArgumentParser(add_help=False)
    g = restart_opts.add_argument_group("restarting containerd")
    g.add_argument(
        "--restart-method",
        choices=["systemd", "command", "none"],
        default=_env("NODECFG_RESTART_METHOD", "systemd"),
        help="how to restart containerd: the host systemd over D-Bus, --restart-command, or never "
        "(env NODECFG_RESTART_METHOD; default %(default)s)",
    )
    g.add_argument(
        "--restart-command",
        default=_env("NODECFG_RESTART_COMMAND"),
        help="argv for --restart-method command, shell-quoted, e.g. "
        "'nsenter -t 1 -m -u -i -n -p -- systemctl restart containerd' (env NODECFG_RESTART_COMMAND)",
    )
    g.add_argument(
        "--systemd-bus",
        default=DEFAULT_SYSTEM_BUS,
        help="the host's D-Bus system bus socket, as a host path (default %(default)s)",
    )
    g.add_argument("--containerd-unit", default=DEFAULT_UNIT, help="systemd unit to restart (default %(default)s)")
    lock_opts = argparse.ArgumentParser(add_help=False)
    g = lock_opts.add_argument_group("another nodecfg on this node")
    g.add_argument(
        "--wait",
        action="store_true",
        help="queue behind another nodecfg that holds the node lock (run: another daemon) instead of exiting with 2",
    )
    g.add_argument(
        "--wait-timeout",
        default=_env("NODECFG_WAIT_TIMEOUT", DEFAULT_WAIT_TIMEOUT),
        help="give up waiting after this long; 0: no limit (SIGTERM/SIGINT always end the wait) "
        "(env NODECFG_WAIT_TIMEOUT; default %(default)s)",
    )
    parser = argparse.ArgumentParser(
        prog="nodecfg",
        description="Render, diff and apply containerd registry configuration (hosts.toml, config.toml) from one registries.yaml.",
    )
    parser.add_argument("--version", action="version", version=f"nodecfg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
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
    p = sub.add_parser(
        "run",
        parents=[common, restart_opts, lock_opts],
        help="the daemon: follow the input, apply hot changes at once, restart containerd safely for cold ones",
    )
    p.add_argument(
        "--node-name",
        default=_env("NODE_NAME", socket.gethostname()),
        help="this node's name, for the restart spread (env NODE_NAME; default: the host name)",
    )
    p.add_argument("--resync", default="5m", help="re-check the node this often even without changes (default %(default)s)")
    p.add_argument(
        "--listen",
        default=_env("NODECFG_LISTEN", ":9808"),
        help="address for /healthz, /readyz and /metrics, or 'none' (env NODECFG_LISTEN; default %(default)s)",
    )
    p = sub.add_parser("status", parents=[common], help="what the daemon did last (from the state dir)")
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
    p = sub.add_parser(
        "uninstall",
        parents=[common, restart_opts, lock_opts],
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
    return parser


def _paths(args: argparse.Namespace) -> NodePaths:
    return NodePaths(
        root=args.root,
        containerd_config=args.containerd_config,
        hosts_dir=args.hosts_dir,
        state_dir=args.state_dir,
        containerd_socket=args.containerd_socket,
    )


def _wait_timeout(args: argparse.Namespace) -> float:
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
def _holding(args: argparse.Namespace, paths: NodePaths, purpose: str, *names: str) -> Iterator[None]:
    """Hold the state dir's locks `names` (taken in this order) for the block; --wait queues behind holders."""
    with contextlib.ExitStack() as held:
        with _signals_end_the_wait() as stopped:
            wait = Waiting.up_to(_wait_timeout(args), stopped) if args.wait else None
            for name in names:
                held.enter_context(StateLock(paths.real(paths.state_dir), purpose, name=name, wait=wait))
            if stopped():  # the signal came as the last lock was taken: still honour it
                raise LockWaitStopped("stopped by SIGTERM/SIGINT before anything was changed")
        yield


def _configure_logging(stream: TextIO) -> None:
    renderer: Any = structlog.dev.ConsoleRenderer(colors=False) if stream.isatty() else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True), renderer],
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def _use_color(choice: str, stream: TextIO) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return stream.isatty()


def _colorize(text: str) -> str:
    out = []
    for line in text.splitlines(keepends=True):
        if line.startswith(("+++", "---")):
            out.append(f"\033[1m{line.rstrip(chr(10))}\033[0m\n")
        elif line.startswith("+"):
            out.append(f"\033[32m{line.rstrip(chr(10))}\033[0m\n")
        elif line.startswith("-"):
            out.append(f"\033[31m{line.rstrip(chr(10))}\033[0m\n")
        elif line.startswith("@@"):
            out.append(f"\033[36m{line.rstrip(chr(10))}\033[0m\n")
        else:
            out.append(line)
    return "".join(out)


def _diffs(p: Prepared) -> list[dict[str, Any]]:
    out = []
    for op in p.plan.operations:
        before = p.current.get(op.path)
        out.append(
            {
                "action": op.action.value,
                "path": op.path,
                "class": op.change_class.value,
                "kind": op.kind.value,
                "keepOriginal": op.keep_original,
                "diff": file_diff(op, before.content if before else None, p.rendered.secrets),
            }
        )
    return out


def _warnings(p: Prepared) -> list[str]:
    return [redact(w, p.rendered.secrets) for w in (*p.input_warnings, *p.rendered.warnings, *p.plan.warnings)]


def _report(p: Prepared) -> dict[str, Any]:
    return {
        "target": {"containerd": str(p.rendered.target.version), "source": p.rendered.target.source.value},
        "inSync": not p.plan.operations,
        "restartRequired": p.plan.restart_required,
        "summary": p.plan.summary(),
        "warnings": _warnings(p),
        "operations": _diffs(p),
    }


def _print_warnings(p: Prepared, err: TextIO) -> None:
    for w in _warnings(p):
        print(f"warning: {w}", file=err)


def cmd_diff(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Dry run: what would change, and whether containerd would need a restart."""
    p = prepare(_paths(args), args.config, args.containerd_version, input_format=args.input_format)
    report = _report(p)
    if args.output == "json":
        json.dump(report, out, indent=2)
        out.write("\n")
    else:
        _print_warnings(p, err)
        print(f"# rendering for {p.rendered.target.describe()}", file=out)
        color = _use_color(args.color, out)
        for d in report["operations"]:
            print(f"# {d['action']} {d['path']} ({d['class']})", file=out)
            out.write(_colorize(d["diff"]) if color else d["diff"])
        print(p.plan.summary(), file=out)
    return EXIT_DIFFERS if p.plan.operations else EXIT_OK


def cmd_apply(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Write the plan to the node; report whether a containerd restart is needed."""
    paths = _paths(args)
    # A dry run first, without the lock (reads only): bad input fails here and leaves nothing on
    # the node, not even the state dir and its lock file. Under the lock the node is read again.
    prepare(paths, args.config, args.containerd_version, input_format=args.input_format)
    with _holding(args, paths, "nodecfg apply", NODE_LOCK):
        recovered = recover_node(paths)
        if recovered:
            log.warning("recovered", what=recovered)
        started = time.monotonic()
        p = prepare(paths, args.config, args.containerd_version, input_format=args.input_format)
        if args.output == "text":
            _print_warnings(p, err)
        if p.plan.operations:
            apply(p)
    duration = round(time.monotonic() - started, 4)
    ops = [op.describe() for op in p.plan.operations]
    log.info(
        "apply",
        changed=[f"{op.action.value}:{op.path}" for op in p.plan.operations],
        hot=sum(op.change_class.value == "hot" for op in p.plan.operations),
        cold=sum(op.change_class.value == "cold" for op in p.plan.operations),
        restart_required=p.plan.restart_required,
        restarted=False,
        duration_s=duration,
    )
    if args.output == "json":
        report = _report(p)
        report["applied"] = True
        report["restarted"] = False
        json.dump(report, out, indent=2)
        out.write("\n")
        return EXIT_OK
    for line in ops:
        print(line, file=out)
    print(p.plan.summary(), file=out)
    if p.plan.restart_required:
        print(
            f"containerd was not restarted (--restart {args.restart}): restart it for {p.paths.containerd_config} to take effect",
            file=out,
        )
    return EXIT_OK


def cmd_render(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Write every desired file under --out (host paths below it), e.g. to review or bake an image."""
    p = prepare(_paths(args), args.config, args.containerd_version, input_format=args.input_format)
    _print_warnings(p, err)
    for f in p.rendered.files:
        real = os.path.join(os.path.abspath(args.out), f.path.lstrip("/"))
        make_dirs(os.path.dirname(real), [])
        atomic_write(real, f.content, f.mode if f.mode is not None else 0o644)
        print(real, file=out)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Check the input, the files it names and the node's config.toml; change nothing."""
    p = prepare(_paths(args), args.config, args.containerd_version, input_format=args.input_format)
    if args.output == "json":
        report = {"valid": True, "format": p.input_format, "registries": sorted(p.config.registries), "warnings": _warnings(p)}
        json.dump(report, out, indent=2)
        out.write("\n")
        return EXIT_OK
    _print_warnings(p, err)
    print(
        f"{args.config}: valid {p.input_format} input ({len(p.config.registries)} registries, {len(p.config.credentials)} credential sources; {p.rendered.target.describe()})",
        file=out,
    )
    return EXIT_OK


def cmd_convert(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print the input translated into nodecfg's format (secrets stay in the file it names)."""
    import yaml  # noqa: PLC0415

    from nodecfg.node.inputs import read_input  # noqa: PLC0415
    from nodecfg.spec.loader import load_input  # noqa: PLC0415

    loaded = load_input(read_input(args.config), args.config, args.input_format)
    for w in loaded.warnings:
        print(f"warning: {w}", file=err)
    if loaded.translated is None:
        print(f"{args.config} is already in nodecfg's format", file=err)
        return EXIT_OK
    if args.output == "json":
        json.dump(loaded.translated, out, indent=2)
        out.write("\n")
        return EXIT_OK
    out.write(f"# Converted by `nodecfg convert` from {os.path.basename(args.config)} ({loaded.format}).\n")
    out.write(yaml.safe_dump(loaded.translated, sort_keys=False, default_flow_style=False))
    return EXIT_OK


def _restarter(args: argparse.Namespace, paths: NodePaths) -> Restarter:
    """The restart method the restart options ask for (`run` and `uninstall`)."""
    from nodecfg.node.restart import make_restarter  # noqa: PLC0415 (jeepney only when needed)

    try:
        command = shlex.split(args.restart_command) if args.restart_command else []
    except ValueError as e:
        raise NodeError(f"--restart-command {args.restart_command!r}: {e}") from None
    return make_restarter(
        args.restart_method, command=command, bus_socket=paths.real(args.systemd_bus), unit=args.containerd_unit
    )


def cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run the daemon until SIGTERM/SIGINT."""
    # Imported here: grpc (CRI) and jeepney (D-Bus) cost ~20 MiB and ~0.1 s that the one-shot
    # commands do not need.
    from nodecfg.daemon import Daemon, Options  # noqa: PLC0415
    from nodecfg.daemon.server import parse_listen  # noqa: PLC0415

    paths = _paths(args)
    try:
        resync = parse_duration(args.resync)
        listen = parse_listen(args.listen)
    except DurationError as e:
        print(f"error: --resync: {e}: {args.resync!r}", file=err)
        return EXIT_ERROR
    except ValueError as e:
        print(f"error: {e}", file=err)
        return EXIT_ERROR
    if resync.nanoseconds <= 0:
        print(f"error: --resync must be a positive duration, not {args.resync!r}", file=err)
        return EXIT_ERROR
    restarter = _restarter(args, paths)
    opts = Options(
        paths=paths,
        config_path=args.config,
        containerd_version=args.containerd_version,
        restarter=restarter,
        node_name=args.node_name,
        resync_s=resync.seconds,
        listen=listen,
        wait_for_lock=args.wait,
        lock_timeout_s=_wait_timeout(args),
        input_format=args.input_format,
    )
    return Daemon(opts).run()


def cmd_status(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print the daemon's last reconcile; exit 0 when ready, 1 when not, 2 when there is no status."""
    paths = _paths(args)
    info = read_file(os.path.join(paths.real(paths.state_dir), STATUS_FILE))
    if info.content is None:
        print(f"error: no status in {paths.state_dir}: has `nodecfg run` run on this node?", file=err)
        return EXIT_ERROR
    status = json.loads(info.content)
    if args.output == "json":
        json.dump(status, out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        last = status.get("last") or {}
        updated = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(status.get("updated", 0)))
        print(f"node:            {status.get('node')}  (daemon pid {status.get('pid')}, updated {updated})", file=out)
        print(f"ready:           {'yes' if status.get('ready') else 'no'}: {status.get('reason')}", file=out)
        print(
            f"restart:         {'pending' if status.get('restartPending') else 'none pending'}"
            f" (policy {status.get('restartPolicy')}, method {status.get('restartMethod')})",
            file=out,
        )
        print(
            f"last reconcile:  {last.get('result', '?')} ({last.get('trigger', '?')}, {last.get('class', '-')},"
            f" restart {last.get('restart', '-')}, {last.get('duration_s', '?')}s)",
            file=out,
        )
        for change in last.get("changed") or []:
            print(f"  {change}", file=out)
        if last.get("error"):
            print(f"error:           {last['error']}", file=out)
        for m in status.get("mirrors") or []:
            state = "in rotation" if m.get("inRotation") else mirror_note(m)
            print(
                f"mirror:          {m.get('url')} ({m.get('registry')}): {state}; last probe {m.get('lastProbe') or '-'}",
                file=out,
            )
        for digest, bad in sorted((status.get("badInputs") or {}).items()):
            print(f"rolled back:     input {digest} at {bad.get('time')}: {bad.get('reason')}", file=out)
    return EXIT_OK if status.get("ready") else EXIT_DIFFERS


def cmd_explain(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Replay containerd's choice of hosts directory and endpoints for one image on this node."""
    from nodecfg.containerd.imageref import ReferenceError_, parse_reference  # noqa: PLC0415
    from nodecfg.node.containerd import detect_target  # noqa: PLC0415
    from nodecfg.node.view import read_node_view  # noqa: PLC0415
    from nodecfg.oncall.explain import explain  # noqa: PLC0415

    try:
        ref = parse_reference(args.image)
    except ReferenceError_ as e:
        print(f"error: {e}", file=err)
        return EXIT_ERROR
    paths = _paths(args)
    view = read_node_view(paths, detect_target(paths, args.containerd_version))
    result = explain(args.image, ref, view)
    notes = [
        n
        for m in daemon_mirrors(paths.real(paths.state_dir))
        if m.get("registry") in (ref.registry, names.WILDCARD) and (n := mirror_note(m))
    ]
    if args.output == "json":
        json.dump({**result.to_json(), "notes": notes}, out, indent=2)
        out.write("\n")
    else:
        for line in result.lines():
            print(line, file=out)
        for n in notes:
            print(f"note:       {n}", file=out)
    return EXIT_OK


def cmd_images(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """images.json for an image-sync tool: every image on the node -> where its mirror must hold it."""
    from nodecfg.node.cri import CRIClient, CRIError  # noqa: PLC0415
    from nodecfg.node.inputs import read_input  # noqa: PLC0415
    from nodecfg.oncall.images import MirrorError, image_mapping, tagged_or_digest  # noqa: PLC0415
    from nodecfg.spec.loader import load_input  # noqa: PLC0415

    paths = _paths(args)
    config = None
    if args.mirror is None:
        config = load_input(read_input(args.config), args.config, args.input_format).config
    socket_real = paths.real(args.containerd_socket)
    if not os.path.exists(socket_real):
        print(f"error: containerd is not running here: no socket {socket_real} (see --containerd-socket)", file=err)
        return EXIT_ERROR
    try:
        with CRIClient(socket_real, timeout=30) as c:
            images = c.list_images()
    except CRIError as e:
        print(f"error: cannot list the node's images: {e}", file=err)
        return EXIT_ERROR
    refs = [r for img in images for r in tagged_or_digest(list(img.repo_tags), list(img.repo_digests))]
    try:
        synced = image_mapping(refs, mirror=args.mirror, config=config, registries=args.registry)
    except MirrorError as e:
        print(f"error: --mirror: {e}", file=err)
        return EXIT_ERROR
    for w in synced.warnings:
        print(f"warning: {w}", file=err)
    text = json.dumps(synced.mapping, indent=2) + "\n"
    if args.out:
        atomic_write(os.path.abspath(args.out), text.encode(), 0o644)
        print(f"{args.out}: {len(synced.mapping)} image(s) of {len(images)} on the node", file=err)
    else:
        out.write(text)
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """The checklist; exit 1 when any check fails."""
    from nodecfg.node.containerd import detect_target  # noqa: PLC0415
    from nodecfg.node.doctor import doctor  # noqa: PLC0415
    from nodecfg.node.view import read_node_view  # noqa: PLC0415
    from nodecfg.oncall.diagnose import Status  # noqa: PLC0415

    if not 0 < args.probe_timeout <= 60:
        print(f"error: --probe-timeout must be between 0 and 60 seconds, not {args.probe_timeout}", file=err)
        return EXIT_ERROR
    paths = _paths(args)
    view = read_node_view(paths, detect_target(paths, args.containerd_version))
    socket_real = None if args.no_cri else paths.real(args.containerd_socket)
    checks = doctor(paths, view, socket_real=socket_real, network=not args.no_network, timeout=args.probe_timeout)
    counts = {s: sum(c.status is s for c in checks) for s in Status}
    failed = counts[Status.FAIL] > 0
    if args.output == "json":
        summary = {s.value: n for s, n in counts.items()}
        json.dump({"ok": not failed, "summary": summary, "checks": [c.to_json() for c in checks]}, out, indent=2)
        out.write("\n")
    else:
        labels = {Status.OK: "[ ok ]", Status.WARN: "[warn]", Status.FAIL: "[FAIL]", Status.SKIP: "[skip]"}
        for c in checks:
            print(f"{labels[c.status]} {c.title}", file=out)
            if c.status in (Status.WARN, Status.FAIL):
                if c.detail:
                    print(f"       why: {c.detail}", file=out)
                if c.fix:
                    print(f"       fix: {c.fix}", file=out)
        print(
            f"{counts[Status.OK]} ok, {counts[Status.WARN]} warning(s), {counts[Status.FAIL]} failure(s), "
            f"{counts[Status.SKIP]} skipped",
            file=out,
        )
    return EXIT_DIFFERS if failed else EXIT_OK


def _print_uninstall(u: Uninstall, out: TextIO, err: TextIO) -> None:
    for note in u.notes:
        print(f"note: {note}", file=err)
    for op in u.plan.operations:
        print(op.describe(), file=out)


def cmd_uninstall(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Remove nodecfg from the node; restart containerd only if config.toml changed."""
    from nodecfg.node.cri import wait_healthy  # noqa: PLC0415 (grpc only when a restart is checked)
    from nodecfg.node.restart import RESTART_TIMEOUT_S, NoRestart  # noqa: PLC0415
    from nodecfg.node.uninstall import carry_out, plan_uninstall  # noqa: PLC0415

    paths = _paths(args)
    restarter = _restarter(args, paths)
    if args.dry_run:  # a read: no lock, no recovery
        u = plan_uninstall(paths, args.containerd_version, force_original=args.force_original)
        _print_uninstall(u, out, err)
        print(f"dry run: {len(u.plan.operations)} change(s) not made", file=out)
        return EXIT_OK
    # The daemon lock too: a daemon left running would put nodecfg straight back.
    with _holding(args, paths, "nodecfg uninstall", DAEMON_LOCK, NODE_LOCK):
        recovered = recover_node(paths)
        if recovered:
            log.warning("recovered", what=recovered)
        u = plan_uninstall(paths, args.containerd_version, force_original=args.force_original)
        _print_uninstall(u, out, err)
        carry_out(paths, u)
    print(f"nodecfg removed from the node ({len(u.plan.operations)} change(s)); state dir {paths.state_dir} removed", file=out)
    log.info(
        "uninstall",
        changed=[f"{op.action.value}:{op.path}" for op in u.plan.operations],
        restart_required=u.plan.restart_required,
    )
    if u.plan.restart_required:
        if isinstance(restarter, NoRestart):
            print(f"config.toml changed: restart containerd for it to take effect ({paths.containerd_config})", file=out)
        else:
            restarter.restart(RESTART_TIMEOUT_S)
            health = wait_healthy(paths.real(args.containerd_socket), UNINSTALL_HEALTH_TIMEOUT_S, lambda h: h.ready)
            print(f"containerd restarted: {health.describe()}", file=out)
            if not health.ready:
                return EXIT_ERROR
    if args.hold:
        print("holding until SIGTERM", file=out)
        out.flush()
        stop = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop)
        signal.sigwait(stop)
    return EXIT_OK


COMMANDS = {
    "diff": cmd_diff,
    "apply": cmd_apply,
    "render": cmd_render,
    "validate": cmd_validate,
    "convert": cmd_convert,
    "run": cmd_run,
    "status": cmd_status,
    "explain": cmd_explain,
    "doctor": cmd_doctor,
    "images": cmd_images,
    "uninstall": cmd_uninstall,
}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run nodecfg; return the exit code. Every error becomes a message and exit code 2.

    A reader that goes away (`nodecfg diff | head -1`) ends the command quietly with
    EXIT_BROKEN_PIPE, as git and grep do, instead of a BrokenPipeError traceback.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = _parser().parse_args(list(argv) if argv is not None else None)
        _configure_logging(err)
        code = _run(args, out, err)
        out.flush()  # here, not at interpreter exit, so a closed pipe is seen by the handler below
        err.flush()
    except BrokenPipeError:
        _discard_output(out, err)
        return EXIT_BROKEN_PIPE
    return code


def _discard_output(*streams: TextIO) -> None:
    """Point the streams' descriptors at /dev/null, so the final flush at exit cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in streams:
            try:
                fd = stream.fileno()
            except (OSError, ValueError):  # not a real file (a test's StringIO), or already closed
                continue
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        return COMMANDS[args.command](args, out, err)
    except SpecError as e:
        print(f"error: {e.render()}", file=err)
    except ConfigError as e:
        print("error: cannot render:", file=err)
        for problem in e.problems:
            print(f"  {problem}", file=err)
    except NodeError as e:
        # A failure while staging removes its temp files; one after the journal is written is
        # finished by the next run, so the node never keeps a half-applied change.
        print(f"error: {e}", file=err)
        return EXIT_ERROR
    except UnicodeDecodeError as e:
        print(f"error: a node file is not UTF-8 text (byte {e.start})", file=err)
    if args.command == "apply":
        print("nothing was changed on the node", file=err)
    return EXIT_ERROR


def main_entry() -> None:
    """Entry point for callers that import the CLI directly (the console script uses __main__)."""
    sys.exit(main())
