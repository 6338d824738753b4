"""Read the input file and everything it refers to (I/O), producing values for the pure layers."""

from __future__ import annotations

import os
from collections.abc import Mapping

from nodecfg.node.fs import NodeError, read_file
from nodecfg.render.materials import Materials, referenced_files
from nodecfg.spec.loader import MAX_INPUT_BYTES
from nodecfg.spec.models import Config

# A CA bundle, a client key or a pull secret is a few KiB; the cap bounds what a wrong path (a log
# file, a disk image) costs before it is refused.
MAX_REFERENCED_BYTES = 1024 * 1024


def read_input(path: str) -> bytes:
    """The input file's bytes (a ConfigMap volume: follows kubelet's ..data symlinks)."""
    info = read_file(path, limit=MAX_INPUT_BYTES)
    if info.content is None:
        raise NodeError(f"read {path}: no such file (set --config or NODECFG_CONFIG)")
    return info.content


def gather_materials(config: Config, config_path: str, env: Mapping[str, str] | None = None) -> Materials:
    """Read every file the input names; paths relative to the input file's directory.

    These paths are as this process sees them (a mounted Secret in a DaemonSet), not host paths.
    """
    base = os.path.dirname(os.path.abspath(config_path))
    files: dict[str, bytes] = {}
    unreadable: dict[str, str] = {}
    for ref in referenced_files(config):
        if ref.path in files or ref.path in unreadable:
            continue
        real = ref.path if os.path.isabs(ref.path) else os.path.join(base, ref.path)
        try:
            info = read_file(real, limit=MAX_REFERENCED_BYTES)
        except NodeError as e:
            unreadable[ref.path] = str(e).split(": ", 1)[-1]
            continue
        if info.content is None:
            unreadable[ref.path] = "no such file"
        else:
            files[ref.path] = info.content
    return Materials(files=files, unreadable=unreadable, env=dict(os.environ if env is None else env))


def watched_dirs(config_path: str, config: Config | None) -> list[str]:
    """Directories whose changes can change the rendering: the input's and every referenced file's.

    A kubelet ConfigMap/Secret volume update swaps the `..data` symlink in that directory, so the
    directory (not the file, which is a symlink through `..data`) is what must be watched.
    """
    base = os.path.dirname(os.path.abspath(config_path))
    dirs = {base}
    for ref in referenced_files(config) if config is not None else []:
        real = ref.path if os.path.isabs(ref.path) else os.path.join(base, ref.path)
        dirs.add(os.path.dirname(os.path.normpath(real)))
    existing = sorted(d for d in dirs if os.path.isdir(d))
    # A directory below another watched one is already covered (watches are recursive).
    return [d for d in existing if not any(d != o and d.startswith(o.rstrip("/") + "/") for o in existing)]
