"""The daemon's commands: run (follow the input until SIGTERM) and status (what it did last)."""

from __future__ import annotations

import argparse
import json
import time
from typing import TextIO

from nodecfg.cli.common import EXIT_DIFFERS, EXIT_ERROR, EXIT_OK, paths_from, restarter_from, wait_timeout
from nodecfg.containerd.durations import DurationError, parse_duration
from nodecfg.node.status import DaemonStatus, read_status_object


def cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run the daemon until SIGTERM/SIGINT."""
    # Imported here: grpc (CRI) and jeepney (D-Bus) cost ~20 MiB and ~0.1 s that the one-shot
    # commands do not need.
    from nodecfg.daemon import Daemon, Options  # noqa: PLC0415
    from nodecfg.daemon.server import parse_listen  # noqa: PLC0415

    paths = paths_from(args)
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
    restarter = restarter_from(args, paths)
    opts = Options(
        paths=paths,
        config_path=args.config,
        containerd_version=args.containerd_version,
        restarter=restarter,
        node_name=args.node_name,
        resync_s=resync.seconds,
        listen=listen,
        wait_for_lock=args.wait,
        lock_timeout_s=wait_timeout(args),
        input_format=args.input_format,
    )
    return Daemon(opts).run()


def cmd_status(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print the daemon's last reconcile; exit 0 when ready, 1 when not, 2 when there is no status."""
    paths = paths_from(args)
    try:
        data = read_status_object(paths.real(paths.state_dir))
    except ValueError as e:  # JSONDecodeError too: a damaged file, not a crash
        print(
            f"error: {paths.state_dir}/status.json is damaged ({str(e).splitlines()[0]}); the daemon rewrites it on its next reconcile",
            file=err,
        )
        return EXIT_ERROR
    if data is None:
        print(f"error: no status in {paths.state_dir}: has `nodecfg run` run on this node?", file=err)
        return EXIT_ERROR
    status = DaemonStatus.from_json(data)
    if args.output == "json":  # the file as the daemon wrote it: a newer daemon's keys kept, none made up
        json.dump(data, out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        _print_status(status, out)
    return EXIT_OK if status.ready else EXIT_DIFFERS


def _print_status(status: DaemonStatus, out: TextIO) -> None:
    """`nodecfg status` for people: one line per fact, the last reconcile's changes indented."""
    last = status.last
    updated = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(status.updated))
    print(f"node:            {status.node}  (daemon pid {status.pid}, updated {updated})", file=out)
    print(f"ready:           {'yes' if status.ready else 'no'}: {status.reason}", file=out)
    print(
        f"restart:         {'pending' if status.restart_pending else 'none pending'}"
        f" (policy {status.restart_policy}, method {status.restart_method})",
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
    for m in status.mirrors:
        state = "in rotation" if m.in_rotation else m.note()
        print(f"mirror:          {m.url} ({m.registry}): {state}; last probe {m.last_probe or '-'}", file=out)
    for digest, bad in sorted(status.bad_inputs.items()):
        print(f"rolled back:     input {digest} at {bad.time}: {bad.reason}", file=out)
