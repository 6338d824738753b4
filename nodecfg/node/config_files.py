"""containerd's config.toml and the files it imports, read the way containerd finds them (I/O).

Import paths are host paths: they are resolved under the root (`--root /host` in a DaemonSet),
globs expanded as Go's filepath.Glob does (names in order, hidden files included), then the files
are read breadth-first, each path once, as containerd loads them (nodecfg/containerd/effective.py).
Bounded: at most MAX_FILES files of at most MAX_FILE_BYTES each, regular files only.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import tomllib
from collections.abc import Mapping
from typing import Any

from nodecfg.containerd.effective import ConfigFile, grpc_address, import_patterns
from nodecfg.containerd.versions import CONFIG_V4, ContainerdVersion
from nodecfg.node.fs import NodeError, list_dir, read_file
from nodecfg.node.paths import NodePaths

MAX_FILES = 64
MAX_FILE_BYTES = 1024 * 1024
_GLOB_MAGIC = frozenset("*?[")


def _glob(paths: NodePaths, pattern: str) -> list[str]:
    """The host paths matching `pattern` (absolute), in Go's order: name order, level by level.

    As Go's filepath.Glob: a name matches whatever it is (a dangling link too: containerd then
    fails to read it, and so does nodecfg), and a directory that cannot be listed matches nothing.
    Bounded: more than MAX_FILES matches at any level is refused.
    """
    parts = [p for p in pattern.split("/") if p]
    found = ["/"]
    for part in parts:
        nxt: list[str] = []
        for base in found:
            if _GLOB_MAGIC.isdisjoint(part):
                nxt.append(posixpath.join(base, part))
                continue
            try:
                names = sorted(list_dir(paths.real(base)))
            except (NodeError, OSError):
                continue
            nxt += [posixpath.join(base, n) for n in names if fnmatch.fnmatchcase(n, part.replace("[^", "[!"))]
            if len(nxt) > MAX_FILES:
                raise NodeError(f"imports {pattern!r}: matches more than {MAX_FILES} entries")
        found = nxt
    return [p for p in found if os.path.lexists(paths.real(posixpath.dirname(p)) + "/" + posixpath.basename(p))]


def _parse(text: bytes, path: str) -> tuple[str, Mapping[str, Any]]:
    try:
        decoded = text.decode("utf-8")
        return decoded, tomllib.loads(decoded)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise NodeError(
            f"read {path} (imported by containerd's config): not valid TOML, containerd would refuse it: {why}"
        ) from None


def imported_files(paths: NodePaths, main: Mapping[str, Any], release: ContainerdVersion) -> list[ConfigFile]:
    """The files containerd loads after the main config.toml (already parsed as `main`), in its order.

    An import that names a missing file (not a glob) is a ConfigFile with `plain` None: containerd
    refuses to start then, and the model says so. Raises NodeError for a file that cannot be read
    or parsed, or for more than MAX_FILES files.
    """
    out: list[ConfigFile] = []
    loaded = {paths.containerd_config}
    queue = list(import_patterns(main, paths.containerd_config, release))
    while queue:
        pattern = queue.pop(0)
        for path in _glob(paths, pattern) if "*" in pattern else [pattern]:
            if path in loaded:
                continue
            loaded.add(path)
            if len(loaded) > MAX_FILES:
                raise NodeError(f"read {paths.containerd_config}: imports more than {MAX_FILES - 1} files")
            info = read_file(paths.real(path), limit=MAX_FILE_BYTES)
            if info.content is None:
                out.append(ConfigFile(path, None))
                continue
            text, plain = _parse(info.content, path)
            out.append(ConfigFile(path, plain, text))
            queue += import_patterns(plain, path, release)
    return out


def configured_socket(paths: NodePaths) -> str | None:
    """The gRPC socket config.toml (with what it imports) sets, as a host path.

    None when it sets none or cannot be read: containerd's default applies, and the reads that
    follow say why.
    """
    try:
        content = read_file(paths.real(paths.containerd_config), limit=MAX_FILE_BYTES).content
        if content is None:
            return None
        main = tomllib.loads(content.decode("utf-8"))
        # Import rules are the same on every release but 1.6's relative globs: 2.3's are used.
        files = [ConfigFile(paths.containerd_config, main), *imported_files(paths, main, CONFIG_V4)]
    except (NodeError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError, OSError):
        return None
    return grpc_address(files)
