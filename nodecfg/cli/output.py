"""What the commands print in common: the log format, diff colour, warnings and the diff/apply report."""

from __future__ import annotations

import os
from typing import Any, TextIO

import structlog

from nodecfg.node.reconcile import Prepared
from nodecfg.plan import file_diff
from nodecfg.plan.redaction import redact


def configure_logging(stream: TextIO) -> None:
    """Log lines to `stream`: readable on a terminal, JSON otherwise."""
    renderer: Any = structlog.dev.ConsoleRenderer(colors=False) if stream.isatty() else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True), renderer],
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def use_color(choice: str, stream: TextIO) -> bool:
    """Whether --color `choice` colours output to `stream`."""
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return stream.isatty()


def colorize(text: str) -> str:
    """A unified diff with ANSI colours: headers bold, additions green, removals red, hunks cyan."""
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


def redacted_warnings(p: Prepared) -> list[str]:
    """Every warning of the input, the render and the plan, secrets redacted."""
    return [redact(w, p.rendered.secrets) for w in (*p.input_warnings, *p.rendered.warnings, *p.plan.warnings)]


def plan_report(p: Prepared) -> dict[str, Any]:
    """The JSON report of diff and apply."""
    return {
        "target": {"containerd": str(p.rendered.target.version), "source": p.rendered.target.source.value},
        "inSync": not p.plan.operations,
        "restartRequired": p.plan.restart_required,
        "summary": p.plan.summary(),
        "warnings": redacted_warnings(p),
        "operations": _diffs(p),
    }


def print_warnings(p: Prepared, err: TextIO) -> None:
    """The warnings, one `warning:` line each."""
    for w in redacted_warnings(p):
        print(f"warning: {w}", file=err)
