"""The `hostAliases` block in the node's /etc/hosts (pure): text in, text out.

nodecfg owns only the lines between its markers; every other byte of the file is kept. An empty
alias list removes the block. containerd resolves registry names through the node's resolver, so
an alias takes effect on the next pull (hot: no restart).
"""

from __future__ import annotations

from collections.abc import Sequence

from nodecfg.spec.models import HostAlias

ETC_HOSTS = "/etc/hosts"  # the node's hosts file, which containerd resolves registry names with

BEGIN = "# BEGIN nodecfg hostAliases (managed by nodecfg: edits inside this block are overwritten)"
END = "# END nodecfg hostAliases"


class HostsFileError(ValueError):
    """The file's nodecfg block is damaged (a marker without its pair)."""


def _span(lines: list[str]) -> tuple[int, int] | None:
    """Line indexes of nodecfg's BEGIN and END markers, or None when there is no block."""
    begins = [i for i, ln in enumerate(lines) if ln.rstrip("\r\n") == BEGIN]
    ends = [i for i, ln in enumerate(lines) if ln.rstrip("\r\n") == END]
    if not begins and not ends:
        return None
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise HostsFileError(
            f"/etc/hosts: nodecfg's block markers are damaged ({len(begins)} BEGIN, {len(ends)} END): "
            "fix or remove them by hand; nothing was changed"
        )
    return begins[0], ends[0]


# Inside the block when nodecfg had to end the line before it: the file had no final newline, and
# taking the block out gives that back. (The block itself always ends its line, so that a later
# `echo ... >> /etc/hosts` lands on a line of its own.)
ADDED_NEWLINE = "# (nodecfg ended the line above: the file had no final newline)"


def _added_newline(lines: list[str], span: tuple[int, int]) -> bool:
    return span[0] + 1 < span[1] and lines[span[0] + 1].rstrip("\r\n") == ADDED_NEWLINE


def strip_block(text: str) -> str:
    """`text` without nodecfg's block (and nothing else), byte for byte as it was before the block."""
    lines = text.splitlines(keepends=True)
    span = _span(lines)
    if span is None:
        return text
    before, after = lines[: span[0]], lines[span[1] + 1 :]
    if _added_newline(lines, span) and before and not after:  # lines added after the block keep theirs
        before[-1] = before[-1].removesuffix("\n")
    return "".join(before + after)


def block(aliases: Sequence[HostAlias], *, added_newline: bool = False) -> str:
    """The block for `aliases` (one line per address, in input order)."""
    out = [BEGIN, *([ADDED_NEWLINE] if added_newline else [])]
    for a in aliases:
        out.append(f"{a.ip}\t{' '.join(a.hostnames)}")
    out.append(END)
    return "\n".join(out) + "\n"


def edit_hosts_file(current: str | None, aliases: Sequence[HostAlias]) -> str | None:
    """The new /etc/hosts, or None when nothing is to be written (no aliases, no block).

    An existing block is replaced where it is; a new one goes at the end.
    """
    text = current or ""
    lines = text.splitlines(keepends=True)
    span = _span(lines)
    if not aliases:
        return None if span is None else strip_block(text)
    if span is not None:
        new = block(aliases, added_newline=_added_newline(lines, span))
        return "".join(lines[: span[0]]) + new + "".join(lines[span[1] + 1 :])
    if text and not text.endswith("\n"):
        return text + "\n" + block(aliases, added_newline=True)
    return text + block(aliases)
