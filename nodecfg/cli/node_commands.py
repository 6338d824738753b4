"""The one-shot commands on the node's files: diff, apply, render, validate, convert, uninstall."""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from typing import TYPE_CHECKING, TextIO

from nodecfg.cli.common import EXIT_DIFFERS, EXIT_ERROR, EXIT_OK, holding, log, paths_from, restarter_from
from nodecfg.cli.output import colorize, plan_report, print_warnings, redacted_warnings, use_color
from nodecfg.containerd.errors import ConfigError
from nodecfg.node.fs import atomic_write, make_dirs
from nodecfg.node.lock import DAEMON_LOCK, NODE_LOCK
from nodecfg.node.reconcile import Prepared, apply, check_effective, prepare, recover_node

if TYPE_CHECKING:
    from nodecfg.node.uninstall import Uninstall

UNINSTALL_HEALTH_TIMEOUT_S = 60.0  # the input's restart.healthTimeout default; uninstall has no input


def _require_loaded(p: Prepared) -> None:
    """ConfigError when the node's containerd would not run with the config.toml nodecfg wants.

    Where its binary does not run here, render's model of containerd's loader has already said.
    """
    check = check_effective(p)
    if check.problems:
        raise ConfigError([f"{p.paths.containerd_config}: {problem}; nothing was written" for problem in check.problems])


def cmd_diff(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Dry run: what would change, and whether containerd would need a restart."""
    p = prepare(paths_from(args), args.config, args.containerd_version, input_format=args.input_format)
    _require_loaded(p)
    report = plan_report(p)
    if args.output == "json":
        json.dump(report, out, indent=2)
        out.write("\n")
    else:
        print_warnings(p, err)
        print(f"# rendering for {p.rendered.target.describe()}", file=out)
        color = use_color(args.color, out)
        for d in report["operations"]:
            print(f"# {d['action']} {d['path']} ({d['class']})", file=out)
            out.write(colorize(d["diff"]) if color else d["diff"])
        print(p.plan.summary(), file=out)
    return EXIT_DIFFERS if p.plan.operations else EXIT_OK


def cmd_apply(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Write the plan to the node; report whether a containerd restart is needed."""
    paths = paths_from(args)
    # A dry run first, without the lock (reads only): bad input fails here and leaves nothing on
    # the node, not even the state dir and its lock file. Under the lock the node is read again.
    prepare(paths, args.config, args.containerd_version, input_format=args.input_format)
    with holding(args, paths, "nodecfg apply", NODE_LOCK):
        recovered = recover_node(paths)
        if recovered:
            log.warning("recovered", what=recovered)
        started = time.monotonic()
        p = prepare(paths, args.config, args.containerd_version, input_format=args.input_format)
        _require_loaded(p)
        if args.output == "text":
            print_warnings(p, err)
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
        report = plan_report(p)
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
    p = prepare(paths_from(args), args.config, args.containerd_version, input_format=args.input_format)
    print_warnings(p, err)
    for f in p.rendered.files:
        real = os.path.join(os.path.abspath(args.out), f.path.lstrip("/"))
        make_dirs(os.path.dirname(real), [])
        atomic_write(real, f.content, f.mode if f.mode is not None else 0o644)
        print(real, file=out)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Check the input, the files it names and the node's config.toml; change nothing."""
    p = prepare(paths_from(args), args.config, args.containerd_version, input_format=args.input_format)
    if args.output == "json":
        report = {
            "valid": True,
            "format": p.input_format,
            "registries": sorted(p.config.registries),
            "warnings": redacted_warnings(p),
        }
        json.dump(report, out, indent=2)
        out.write("\n")
        return EXIT_OK
    print_warnings(p, err)
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

    paths = paths_from(args)
    restarter = restarter_from(args, paths)
    if args.dry_run:  # a read: no lock, no recovery
        u = plan_uninstall(paths, args.containerd_version, force_original=args.force_original)
        _print_uninstall(u, out, err)
        print(f"dry run: {len(u.plan.operations)} change(s) not made", file=out)
        return EXIT_OK
    # The daemon lock too: a daemon left running would put nodecfg straight back.
    with holding(args, paths, "nodecfg uninstall", DAEMON_LOCK, NODE_LOCK):
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
            health = wait_healthy(paths.real(paths.containerd_socket), UNINSTALL_HEALTH_TIMEOUT_S, lambda h: h.ready)
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
