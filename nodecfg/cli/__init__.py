"""Command line: `nodecfg COMMAND [options]`; `main(argv) -> int` parses, runs and returns the exit code.

The commands, by the module that runs them (parser.py holds their options and help texts):
  node_commands
    diff       show what apply would change (exit 0 in sync, 1 differs, 2 error)
    apply      write the changes to the node
    render     write the files nodecfg would write into a directory instead of the node
    validate   check the input and what it refers to; change nothing
    convert    print a k3s/RKE2 registries.yaml, .dockerconfigjson, auth.json or image rules as nodecfg's input
    uninstall  take nodecfg off the node: remove its files, restore the originals, undo its config.toml edits
  daemon_commands
    run        the daemon: follow the input, apply hot changes at once, restart containerd safely for cold ones
    status     what the daemon did last (from the state dir)
  oncall_commands
    explain    where containerd on this node will pull an image from, and why
    images     list the node's images (CRI) and write an image-sync images.json mapping each to a mirror
    doctor     check containerd, its registry config, every hosts.toml and every registry endpoint
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from nodecfg.cli.common import EXIT_ERROR
from nodecfg.cli.daemon_commands import cmd_run, cmd_status
from nodecfg.cli.node_commands import cmd_apply, cmd_convert, cmd_diff, cmd_render, cmd_uninstall, cmd_validate
from nodecfg.cli.oncall_commands import cmd_doctor, cmd_explain, cmd_images
from nodecfg.cli.output import configure_logging
from nodecfg.cli.parser import build_parser
from nodecfg.containerd.errors import ConfigError
from nodecfg.node.fs import NodeError
from nodecfg.spec.loader import SpecError

# The reader of our output went away: what a shell reports for a process killed by SIGPIPE
# (128 + 13), as for `git log | head -1`, and distinct from diff's 0/1/2.
EXIT_BROKEN_PIPE = 141

Command = Callable[[argparse.Namespace, TextIO, TextIO], int]
COMMANDS: dict[str, Command] = {
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
        args = build_parser().parse_args(list(argv) if argv is not None else None)
        configure_logging(err)
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
