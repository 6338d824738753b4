"""Plan (pure): current files + desired files -> ordered operations, change class, redacted diff."""

from __future__ import annotations

import difflib
import hashlib
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from nodecfg.plan.redaction import redact_toml, redact_values
from nodecfg.render import Rendered
from nodecfg.render.files import FileKind
from nodecfg.render.hosts import is_owned_hosts_toml, kind_of_file_name


class ChangeClass(str, Enum):
    """HOT: containerd re-reads it on the next pull. COLD: needs a containerd restart."""

    HOT = "hot"
    COLD = "cold"


class Action(str, Enum):
    """What an operation does to one file."""

    WRITE = "write"
    DELETE = "delete"


@dataclass(frozen=True)
class CurrentFile:
    """A file as it is on the node now (content None: it does not exist)."""

    content: bytes | None
    mode: int | None = None


@dataclass(frozen=True)
class Operation:
    """One step of an apply, on the host path `path`."""

    action: Action
    path: str
    change_class: ChangeClass
    kind: FileKind
    content: bytes | None = None
    mode: int | None = None
    keep_original: bool = False  # the node has a file here nodecfg did not write: keep a copy

    def describe(self) -> str:
        """`write /etc/containerd/certs.d/docker.io/hosts.toml (hot)`."""
        extra = ", original kept" if self.keep_original else ""
        return f"{self.action.value} {self.path} ({self.change_class.value}{extra})"


@dataclass(frozen=True)
class Plan:
    """Ordered operations and the state nodecfg will own after them."""

    operations: tuple[Operation, ...]
    owned: Mapping[str, str]  # host path -> sha256 of content, for files nodecfg wrote
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def restart_required(self) -> bool:
        """True when a cold file changes: containerd reads config.toml only at start."""
        return any(op.change_class is ChangeClass.COLD for op in self.operations)

    def summary(self) -> str:
        """One line: what changes, which class, and whether containerd must restart."""
        if not self.operations:
            return "in sync: nothing to change"
        writes = sum(op.action is Action.WRITE for op in self.operations)
        deletes = len(self.operations) - writes
        hot = sum(op.change_class is ChangeClass.HOT for op in self.operations)
        cold = len(self.operations) - hot
        restart = "yes" if self.restart_required else "no"
        return f"{writes} to write, {deletes} to delete ({hot} hot, {cold} cold); containerd restart required: {restart}"


CHANGE_CLASS = {
    FileKind.HOSTS: ChangeClass.HOT,
    FileKind.CA: ChangeClass.HOT,
    FileKind.CLIENT_CERT: ChangeClass.HOT,
    FileKind.CLIENT_KEY: ChangeClass.HOT,
    FileKind.CONTAINERD_CONFIG: ChangeClass.COLD,
    FileKind.ETC_HOSTS: ChangeClass.HOT,
}
# Write order: what a hosts.toml points at exists before the hosts.toml that names it
# (containerd fails a pull when a referenced CA is missing), and config.toml comes last.
_WRITE_ORDER = {
    FileKind.ETC_HOSTS: 0,
    FileKind.CA: 0,
    FileKind.CLIENT_CERT: 0,
    FileKind.CLIENT_KEY: 0,
    FileKind.HOSTS: 1,
    FileKind.CONTAINERD_CONFIG: 2,
}


def sha256(data: bytes) -> str:
    """Hex digest used to record what nodecfg wrote."""
    return hashlib.sha256(data).hexdigest()


def make_plan(
    rendered: Rendered,
    current: Mapping[str, CurrentFile],
    owned: Mapping[str, str],
    hosts_dir_entries: Iterable[str] = (),
) -> Plan:
    """Operations that turn `current` into `rendered`.

    `current` holds every desired path and every owned path; `owned` is what nodecfg wrote before;
    `hosts_dir_entries` are the directory names under the hosts dir (for shadowing warnings).
    """
    writes: list[Operation] = []
    warnings: list[str] = []
    new_owned: dict[str, str] = {}
    desired_paths = {f.path for f in rendered.files}
    for f in sorted(rendered.files, key=lambda f: (_WRITE_ORDER[f.kind], f.path)):
        cur = current.get(f.path, CurrentFile(None))
        mode = f.mode if f.mode is not None else (cur.mode if cur.mode is not None else 0o644)
        if f.kind not in (FileKind.CONTAINERD_CONFIG, FileKind.ETC_HOSTS):  # edited, not owned
            new_owned[f.path] = sha256(f.content)
        if cur.content == f.content and cur.mode == mode:
            continue
        foreign = cur.content is not None and f.path not in owned
        if foreign and f.kind is FileKind.HOSTS and not is_owned_hosts_toml(cur.content or b""):
            warnings.append(
                f"{f.path}: exists and was not written by nodecfg: it is replaced, the original kept in the state dir"
            )
        writes.append(
            Operation(
                Action.WRITE,
                f.path,
                CHANGE_CLASS[f.kind],
                f.kind,
                f.content,
                mode,
                keep_original=foreign or f.kind is FileKind.CONTAINERD_CONFIG,
            )
        )
    deletes: list[Operation] = []
    # Stale files nodecfg wrote: hosts.toml first (so nothing points at a missing cert), then certs.
    stale = [p for p in owned if p not in desired_paths and current.get(p, CurrentFile(None)).content is not None]
    for path in sorted(stale, key=lambda p: (kind_of_file_name(posixpath.basename(p)) is not FileKind.HOSTS, p)):
        kind = kind_of_file_name(posixpath.basename(path))
        deletes.append(Operation(Action.DELETE, path, CHANGE_CLASS[kind], kind))
    names = set(hosts_dir_entries)
    for f in rendered.files:
        if f.kind is FileKind.HOSTS:
            dirname = posixpath.basename(posixpath.dirname(f.path))
            if ":" in dirname and not dirname.endswith("]"):
                head, _, port = dirname.rpartition(":")
                if f"{head}_{port}_" in names:
                    warnings.append(
                        f"{posixpath.dirname(f.path)}: containerd reads {head}_{port}_/ first, which exists and shadows this directory"
                    )
    return Plan(tuple(writes + deletes), new_owned, tuple(warnings))


# Files whose secrets are found by parsing them; the others (CA and cert PEM, /etc/hosts) hold none
# of their own, so only the known secrets are hidden there.
_TOML_KINDS = frozenset({FileKind.HOSTS, FileKind.CONTAINERD_CONFIG})


def _text(data: bytes | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", errors="replace")


def _redacted(kind: FileKind, before: str, after: str, secrets: Iterable[str]) -> tuple[str, str]:
    """Both sides with every secret hidden; a secret found on one side is hidden on the other too."""
    if kind not in _TOML_KINDS:
        return redact_values(before, secrets), redact_values(after, secrets)
    a, b = redact_toml((before, after), secrets)
    return a, b


def file_diff(op: Operation, before: bytes | None, secrets: Iterable[str]) -> str:
    """Unified diff of one operation, secrets redacted; key files only say that they change."""
    label_a = op.path if before is not None else "/dev/null"
    label_b = op.path if op.action is Action.WRITE else "/dev/null"
    if op.kind is FileKind.CLIENT_KEY:
        what = "created" if before is None else ("deleted" if op.action is Action.DELETE else "changed")
        return f"--- {label_a}\n+++ {label_b}\n(private key file {what}; content not shown)\n"
    after = op.content if op.action is Action.WRITE else None
    a, b = _redacted(op.kind, _text(before), _text(after), secrets)
    lines = list(difflib.unified_diff(a.splitlines(keepends=True), b.splitlines(keepends=True), label_a, label_b))
    if not lines:
        if before == after:
            return f"--- {label_a}\n+++ {label_b}\n(mode changes to {oct(op.mode or 0)})\n"
        return f"--- {label_a}\n+++ {label_b}\n(a secret value changes; not shown)\n"
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
