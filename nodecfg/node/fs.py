"""Filesystem primitives: paths under a root, atomic writes, reads with context in errors."""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass

TMP_SUFFIX = ".nodecfg-tmp"
MAX_HOPS = 40


class NodeError(Exception):
    """An I/O step failed; the message says which operation on which path, and why."""


def host_path(root: str, path: str) -> str:
    """Where host path `path` is, for a process that sees the host's root at `root`.

    Symlinks are followed as the host would follow them, with `root` as `/`, so an absolute link
    inside a mounted host root (e.g. /etc/containerd -> /opt/ctd) never escapes the mount, and a
    symlinked config.toml is written through to its target instead of being replaced.
    """
    root = os.path.abspath(root)
    pending = [p for p in path.split("/") if p]
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        target = _link_target(candidate)
        if target is not None:
            hops += 1
            if hops > MAX_HOPS:
                raise NodeError(f"resolve {path}: too many levels of symbolic links")
            if target.startswith("/"):
                resolved = []
            pending = [p for p in target.split("/") if p] + pending
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _link_target(path: str) -> str | None:
    """The target of symlink `path`; None when it is no symlink (or was just removed: a writer is at work)."""
    try:
        return os.readlink(path)
    except OSError:
        return None


def list_dir(real: str) -> list[str]:
    """Names in a directory; [] when it is absent (an uninstall may remove it while a read runs)."""
    try:
        return os.listdir(real)
    except (FileNotFoundError, NotADirectoryError):
        return []


@dataclass(frozen=True)
class FileInfo:
    """A file's content and mode (content None: no file)."""

    content: bytes | None
    mode: int | None


_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
)


def _require_regular(real: str, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    raise NodeError(f"read {real}: {kind}, not a regular file")


def _read_fd(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = os.read(fd, min(1 << 20, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def read_file(real: str, limit: int = 16 * 1024 * 1024) -> FileInfo:
    """Read a regular file of at most `limit` bytes; a missing file is FileInfo(None, None).

    Anything else is refused without blocking: open() of a FIFO waits for a writer forever (and a
    daemon stuck there ignores SIGTERM), and opening a device can act on it (a watchdog starts its
    timer). So the file is stat()ed (following symlinks, as kubelet's ..data links need) before it
    is opened, opened non-blocking, and fstat()ed again in case it was swapped in between.
    """
    try:
        _require_regular(real, os.stat(real).st_mode)
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        return FileInfo(None, None)
    except OSError as e:
        raise NodeError(f"read {real}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        _require_regular(real, st.st_mode)
        if st.st_size > limit:
            raise NodeError(f"read {real}: larger than {limit} bytes")
        data = _read_fd(fd, limit)
    except OSError as e:
        raise NodeError(f"read {real}: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew after fstat
        raise NodeError(f"read {real}: larger than {limit} bytes")
    return FileInfo(data, stat.S_IMODE(st.st_mode))


def fsync_dir(path: str) -> None:
    """Make a rename or unlink in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(real: str) -> str:
    """The temp file beside `real` that an atomic write goes through."""
    d, name = os.path.split(real)
    return os.path.join(d, f".{name}{TMP_SUFFIX}")


def write_temp(real: str, content: bytes, mode: int) -> str:
    """Write content to the temp file beside `real` (fsynced, final mode and owner); return it.

    The owner of an existing file is kept: nodecfg runs as root and must not take files over.
    """
    tmp = temp_path(real)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        try:
            os.fchmod(fd, mode)
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(real)
                if os.geteuid() == 0:
                    os.fchown(fd, st.st_uid, st.st_gid)
            view = memoryview(content)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise NodeError(f"write {real}: {e.strerror}") from None
    return tmp


def atomic_write(real: str, content: bytes, mode: int) -> None:
    """Temp file in the same directory, fsync, rename, fsync the directory."""
    tmp = write_temp(real, content, mode)
    try:
        os.replace(tmp, real)
        fsync_dir(os.path.dirname(real))
    except OSError as e:
        raise NodeError(f"write {real}: {e.strerror}") from None


def missing_dirs(real_dir: str) -> list[str]:
    """`real_dir` and those of its parents that do not exist, parents first: what `make_dirs` creates."""
    missing = []
    d = real_dir
    while not os.path.isdir(d):
        missing.append(d)
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    return missing[::-1]


def make_dirs(real_dir: str, created: list[str]) -> None:
    """Mkdir -p, recording each directory created (so it can be removed when empty again)."""
    for d in missing_dirs(real_dir):
        try:
            os.mkdir(d, 0o755)
        except FileExistsError:
            continue
        except OSError as e:
            raise NodeError(f"mkdir {d}: {e.strerror}") from None
        created.append(d)
