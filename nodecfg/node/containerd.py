"""Find out which containerd the node runs (I/O: runs its binary, reads the package database)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psutil
import tomlkit
import tomlkit.exceptions

from nodecfg.containerd.config_toml import V2_TABLE, V3_TABLE, get_path
from nodecfg.containerd.effective import ConfigFile
from nodecfg.containerd.versions import ASSUMED, ContainerdTarget, ContainerdVersion, VersionSource
from nodecfg.node.fs import NodeError, atomic_write, host_path, list_dir, read_file
from nodecfg.node.paths import NodePaths
from nodecfg.node.state import State, load_state

BINARY_CANDIDATES = ("/usr/bin/containerd", "/usr/local/bin/containerd", "/bin/containerd")
PACKAGE_NAMES = ("containerd", "containerd.io")
CRI_VERSION_TIMEOUT_S = 2.0


def _candidates(root: str, socket_real: str | None) -> list[str]:
    """Binaries to try, as this process opens them.

    First the one the running containerd was started from (its /proc/<pid>/exe, when the pid can
    be seen: hostPID), then the usual places.

    The path, not the magic link: after a package upgrade the link still shows the old, deleted
    inode, while the path holds what the next restart runs.
    """
    out: list[str] = []
    pid = serving_pid(socket_real) if socket_real else None
    if pid is not None:
        try:
            exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
        except OSError:
            exe = ""
        if exe.startswith("/"):
            out.append(host_path(root, exe))
    out += [host_path(root, c) for c in BINARY_CANDIDATES]
    return list(dict.fromkeys(out))


def _from_binary(root: str, socket_real: str | None = None) -> ContainerdVersion | None:
    for real in _candidates(root, socket_real):
        if not os.access(real, os.X_OK):
            continue
        try:
            out = subprocess.run([real, "--version"], capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            continue  # a host binary may not run inside a container (libraries): try the package db
        if out.returncode == 0:
            # "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
            for token in out.stdout.split()[1:]:
                if re.match(r"^v?[0-9]+\.[0-9]+", token):
                    return ContainerdVersion.parse(token)
    return None


def _from_dpkg(root: str) -> ContainerdVersion | None:
    try:
        with open(host_path(root, "/var/lib/dpkg/status"), encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    for stanza in text.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", stanza, flags=re.M))
        if fields.get("Package") in PACKAGE_NAMES and "installed" in fields.get("Status", "").split():
            try:
                return ContainerdVersion.parse(fields.get("Version", "").split(":")[-1])
            except ValueError:
                return None
    return None


def _from_cri(socket_real: str | None) -> ContainerdVersion | None:
    """The release of the containerd serving `socket_real`, from its CRI Version call.

    That is the process that reads hosts.toml and config.toml, so it is the truth when it answers.
    A socket that is absent or silent costs at most CRI_VERSION_TIMEOUT_S.
    """
    if not socket_real or not os.path.exists(socket_real):
        return None
    from nodecfg.node.cri import CRIClient, CRIError  # noqa: PLC0415 (grpc loads only when a socket is there)

    try:
        with CRIClient(socket_real, timeout=CRI_VERSION_TIMEOUT_S) as c:
            answer = c.version()
    except CRIError:
        return None  # not serving CRI (its plugin failed, or not containerd): the binary tells
    try:
        return ContainerdVersion.parse(answer.runtime_version)
    except ValueError:
        return None


def detect_containerd(
    root: str, flag: str | None, *, socket_real: str | None = None, recorded: str | None = None
) -> ContainerdTarget:
    """The release to render for, from the first source that answers.

    --containerd-version, else the running containerd (CRI Version on `socket_real`), else the
    binary under root, else the package database, else what the last apply `recorded` in state,
    else assumed.

    When the running release and the binary on disk differ (an upgrade or a downgrade waiting for
    containerd's restart), files are rendered for the lower of the two: both read them.
    """
    if flag:
        return ContainerdTarget(ContainerdVersion.parse(flag), VersionSource.FLAG)
    running = _from_cri(socket_real)
    on_disk = _from_binary(root, socket_real)
    if running is not None:
        if on_disk is None or on_disk == running:
            return ContainerdTarget(running, VersionSource.RUNNING)
        low = min(running, on_disk)
        return ContainerdTarget(
            low,
            VersionSource.RUNNING if low == running else VersionSource.BINARY,
            f"containerd {running} is running but the binary on disk is {on_disk} (waiting for a restart): "
            f"rendering for {low}, which both read",
        )
    if on_disk is not None:
        return ContainerdTarget(on_disk, VersionSource.BINARY)
    v = _from_dpkg(root)
    if v is not None:
        return ContainerdTarget(v, VersionSource.PACKAGE)
    if recorded:
        try:
            return ContainerdTarget(ContainerdVersion.parse(recorded), VersionSource.STATE)
        except ValueError:
            pass
    return ContainerdTarget(ASSUMED, VersionSource.ASSUMED)


def detect_target(paths: NodePaths, flag: str | None, state: State | None = None) -> ContainerdTarget:
    """The containerd release to render for on this node (see `detect_containerd`)."""
    if state is None:
        state = load_state(paths.real(paths.state_dir))
    return detect_containerd(paths.root, flag, socket_real=paths.real(paths.containerd_socket), recorded=state.containerd)


def find_binary(root: str, socket_real: str | None = None) -> str | None:
    """The host's containerd binary (as this process opens it), if there is one.

    The one the containerd serving `socket_real` runs, where that can be seen.
    """
    return next((real for real in _candidates(root, socket_real) if os.access(real, os.X_OK)), None)


def serving_pid(socket_real: str) -> int | None:
    """The pid of the process listening on containerd's socket (SO_PEERCRED), or None.

    The kernel reports it in this process's pid namespace: a DaemonSet needs `hostPID` for it to
    name the host's containerd (without it the answer is 0, taken as unknown).
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(socket_real)
            pid, _uid, _gid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    except OSError:
        return None
    return pid or None


def started_at(pid: int | None) -> float | None:
    """When process `pid` started (epoch seconds), or None if unknown."""
    if pid is None:
        return None
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None


# psutil derives a process's start time from the boot time, which the kernel gives in whole
# seconds: a containerd that started less than this before config.toml's mtime may have read it.
START_TIME_SLACK_S = 1.0


def started_before_config(paths: NodePaths) -> bool | None:
    """Whether the containerd serving the socket started before config.toml was last written.

    True: it runs with an older file. None when either time cannot be seen (no hostPID, no file).
    containerd 2.x reports no registry config over CRI; this is how a restart still pending shows.
    """
    since = started_at(serving_pid(paths.real(paths.containerd_socket)))
    try:
        mtime = os.stat(paths.real(paths.containerd_config)).st_mtime
    except OSError:
        return None
    if since is None:
        return None
    return since < mtime - START_TIME_SLACK_S


@dataclass(frozen=True)
class DumpCheck:
    """What `containerd --config <candidate> config dump` said about a candidate config.toml."""

    ran: bool  # False: the host binary could not run here (the check was skipped, not passed)
    problems: tuple[str, ...]
    note: str = ""


def dumped_registry_table(dumped: dict[str, Any]) -> tuple[str, ...]:
    """Where a `containerd config dump` shows the registry settings its CRI uses.

    A 2.x dump always holds the images plugin `io.containerd.cri.v1.images` (2.x migrates a
    version 2 file's `io.containerd.grpc.v1.cri` registry table into it); a 1.x dump never does
    (1.x drops v3 sections) and shows a version 1 file translated into `io.containerd.grpc.v1.cri`.
    So the dump itself says which table the binary that made it reads.
    """
    return V3_TABLE if isinstance(get_path(dumped, V3_TABLE[:2]), dict) else V2_TABLE


def check_with_containerd(binary: str | None, config_real: str, hosts_dir: str, auth_hosts: frozenset[str]) -> DumpCheck:
    """Load a config.toml with the host's containerd and check that our edits land where it reads them.

    Used on the candidate before it is written, and on the file on disk after a restart (with a
    containerd that started after the write, that is what it loaded: 2.x reports no registry
    config over CRI). `config dump` catches TOML and type errors and shows the merged result
    (imports, version migration); it does not run plugin validation, so the `mirrors`/`configs.tls`
    rules are checked by the renderer, and a typo'd key would show here as a missing `config_path`.
    """
    if binary is None:
        return DumpCheck(False, (), "no containerd binary found on the node")
    try:
        out = subprocess.run(
            [binary, "--config", config_real, "config", "dump"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError) as e:
        return DumpCheck(False, (), f"{binary} could not run here: {e}")
    if out.returncode != 0:
        if not _runs(binary):  # a host binary this container cannot run (its libraries): the model stands
            return DumpCheck(False, (), f"{binary} does not run here")
        lines = [_without_values(ln.strip()) for ln in out.stderr.splitlines() if ln.strip()]
        return DumpCheck(
            True, (f"containerd rejects the candidate config.toml: {lines[-1] if lines else 'exit ' + str(out.returncode)}",)
        )
    try:
        dumped = tomllib.loads(out.stdout)
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        return DumpCheck(False, (), f"could not read containerd's config dump: {e}")
    table = dumped_registry_table(dumped)
    registry = get_path(dumped, table)
    if not isinstance(registry, dict):
        label = ".".join(table)
        return DumpCheck(True, (f"containerd's config dump has no {label} table: the edit would not take effect",))
    problems = []
    if hosts_dir not in str(registry.get("config_path") or "").split(":"):
        problems.append(f"containerd would load config_path = {registry.get('config_path')!r}, not {hosts_dir!r}")
    configs = registry.get("configs") or {}
    for host in sorted(auth_hosts):
        if not isinstance(get_path(configs, (host, "auth")), dict):
            problems.append(f"containerd would not load the credentials for {host}")
    return DumpCheck(True, tuple(problems))


def _runs(binary: str) -> bool:
    """Whether `binary --version` works here."""
    try:
        return subprocess.run([binary, "--version"], capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


# 1.x's TOML decoder quotes the value it cannot convert ("Can't convert 31415926535(int64) to
# string"), and that value may be a password: only its type is kept.
_CONVERT = re.compile(r"Can't convert (.*)\(([^()]*)\) to ")


def _without_values(line: str) -> str:
    return _CONVERT.sub(lambda m: f"Can't convert a {m.group(2)} value to ", line)


def _with_imports(text: str, imports: list[str] | None) -> str:
    """`text` with its `imports` set to `imports` (None: removed); everything else as it is."""
    doc = tomlkit.parse(text)
    if imports is None:
        doc.pop("imports", None)
    else:
        doc["imports"] = imports
    return doc.as_string()


SCRATCH_PREFIX = "nodecfg-dump-"


def _sweep_scratch(tmp: str) -> None:
    """Remove the scratch directories of nodecfg processes that are gone (killed mid-check)."""
    for name in list_dir(tmp):
        if not name.startswith(SCRATCH_PREFIX):
            continue
        pid = name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)


def check_loaded(
    binary: str | None, text: str, imported: Sequence[ConfigFile], paths: NodePaths, auth_hosts: frozenset[str]
) -> DumpCheck:
    """`check_with_containerd` for config.toml `text` with the files it imports, as the host reads them.

    containerd resolves import paths as host paths; run where the host is mounted elsewhere (a
    DaemonSet's /host), it would read the container's files instead. So the files go into a
    private temp directory: config.toml importing each file nodecfg found (in containerd's order,
    a missing one as a path that does not exist), each imported file without imports of its own.
    What containerd merges, and each file's `version`, stay the same. Messages name the host's
    files, not the copies.
    """
    if binary is None:
        return DumpCheck(False, (), "no containerd binary found on the node")
    tmp = tempfile.gettempdir()
    _sweep_scratch(tmp)
    scratch = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")  # mode 0700: the files may hold credentials
    try:
        names: list[str] = []
        for i, f in enumerate(imported):
            name = os.path.join(scratch, f"{i:03d}.toml")
            names.append(name)
            if f.plain is None:
                continue
            # The text nodecfg read and judged, not the file again (it may have changed since).
            content = f.text if f.text is not None else (read_file(paths.real(f.path)).content or b"").decode("utf-8")
            atomic_write(name, _with_imports(content, None).encode(), 0o600)
        main = os.path.join(scratch, "config.toml")
        atomic_write(main, _with_imports(text, names).encode(), 0o600)
        check = check_with_containerd(binary, main, paths.hosts_dir, auth_hosts)
    except (tomlkit.exceptions.ParseError, UnicodeDecodeError, RecursionError, NodeError, OSError) as e:
        return DumpCheck(False, (), f"could not copy the imported files for containerd: {type(e).__name__}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    renames = [(main, paths.containerd_config), *((n, f.path) for n, f in zip(names, imported, strict=True))]

    def host_names(problem: str) -> str:
        for copy, host in sorted(renames, key=lambda r: -len(r[0])):
            problem = problem.replace(copy, host)
        return problem

    return DumpCheck(check.ran, tuple(host_names(p) for p in check.problems), check.note)
