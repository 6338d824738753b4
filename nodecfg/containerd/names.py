"""Registry names as containerd sees them, and the hosts directory each one maps to.

containerd looks up `<config_path>/<namespace>/hosts.toml` where the namespace is the host[:port]
part of the image reference, byte for byte (docs/containerd.md, ## hosts.toml). So a registry key must be
exactly what image references carry, and it becomes a directory name: anything that could climb out
of the hosts directory is refused here, before any path is built.
"""

from __future__ import annotations

import ipaddress
import re

WILDCARD = "*"
DEFAULT_DIR = "_default"
DOCKER_HUB = "docker.io"
# The host containerd contacts for docker.io when no hosts.toml says otherwise, and therefore the
# key under which credentials for Docker Hub must sit in config.toml (containerd#7385, #4950).
DOCKER_HUB_API_HOST = "registry-1.docker.io"
DOCKER_HUB_ALIASES = frozenset({"index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})

MAX_HOST_LENGTH = 253
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_PORT_RE = re.compile(r"^[0-9]{1,5}$")


class NameError_(ValueError):
    """A registry or host name that containerd could not use (message names the rule)."""


def _check_port(port: str) -> None:
    if not _PORT_RE.match(port) or not 0 < int(port) < 65536:
        raise NameError_(f"port must be a number from 1 to 65535, got {port!r}")


def _check_host(host: str) -> None:
    if not host:
        raise NameError_("host is empty")
    if len(host) > MAX_HOST_LENGTH:
        raise NameError_(f"host is longer than {MAX_HOST_LENGTH} characters")
    if not _HOSTNAME_RE.match(host):
        raise NameError_(
            "must be a host name or IPv4 address (letters, digits, '-' and '.'), optionally with :port, or [IPv6]:port"
        )


def split_host_port(host: str) -> tuple[str, str]:
    """`host[:port]` or `[ipv6][:port]` as (host, port), brackets kept; port "" when none is written.

    As Go's net.SplitHostPort splits what containerd contacts. Nothing is validated: a bare IPv6
    address (more than one ':' and no brackets) is all host.
    """
    if host.startswith("["):
        close = host.find("]")
        if close < 0:
            return host, ""
        rest = host[close + 1 :]
        return host[: close + 1], rest[1:] if rest.startswith(":") else ""
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        return name, port
    return host, ""


def check_host_port(name: str) -> str:
    """Validate `host`, `host:port` or `[ipv6]:port`; return it unchanged.

    This is the form of the registry part of an image reference and of a mirror URL's authority.
    """
    if not isinstance(name, str) or name == "":
        raise NameError_("is empty")
    if len(name) > MAX_HOST_LENGTH + 8:
        raise NameError_(f"is longer than {MAX_HOST_LENGTH + 8} characters")
    if any(c in name for c in "/\\\x00") or ".." in name:
        raise NameError_("must not contain '/', '\\', '..' or NUL (it names a directory)")
    if name.startswith("["):
        close = name.find("]")
        if close < 0:
            raise NameError_("unclosed '[' in IPv6 address")
        addr, rest = name[1:close], name[close + 1 :]
        try:
            ipaddress.IPv6Address(addr)
        except ValueError:
            raise NameError_(f"{addr!r} is not an IPv6 address") from None
        if not rest.startswith(":"):
            raise NameError_("an IPv6 registry must be written [address]:port")
        _check_port(rest[1:])
        return name
    if name.count(":") > 1:
        raise NameError_("an IPv6 address must be written in brackets: [address]:port")
    host, sep, port = name.partition(":")
    _check_host(host)
    if sep:
        _check_port(port)
    return name


def check_registry_key(key: str) -> str:
    """Validate a key of `registries:`: `*` or a registry host as image references write it."""
    if key == WILDCARD:
        return key
    check_host_port(key)
    if key in DOCKER_HUB_ALIASES:
        raise NameError_(
            f"Docker Hub images are looked up by containerd as {DOCKER_HUB!r}, so a directory "
            f"named {key!r} is never used: write {DOCKER_HUB!r}"
        )
    return key


def hosts_dir_name(key: str) -> str:
    """The directory under config_path that containerd consults for registry `key`."""
    return DEFAULT_DIR if key == WILDCARD else key


def host_port_dir_name(key: str) -> str | None:
    """Containerd's first candidate for a `host:port` namespace: `host_port_` (hosts.go hostPaths).

    A directory of that name shadows the literal `host:port` one, so callers warn about it.
    """
    if key == WILDCARD or ":" not in key or key.endswith("]"):
        return None
    head, _, port = key.rpartition(":")
    return f"{head}_{port}_"


def namespace_of_dir(name: str) -> str | None:
    """The namespace a hosts directory serves: `*` for `_default`, `h:5000` for `h_5000_`.

    The inverse of hosts_dir_name and host_port_dir_name; None for a name containerd never looks up.
    """
    if name == DEFAULT_DIR:
        return WILDCARD
    if name.endswith("_") and "_" in name[:-1]:
        head, _, port = name[:-1].rpartition("_")
        if port.isdigit():
            return f"{head}:{port}"
    try:
        check_host_port(name)
    except NameError_:
        return None
    return name


def auth_host(registry: str) -> str:
    """The host containerd contacts, which keys `configs."<host>".auth` in config.toml."""
    return DOCKER_HUB_API_HOST if registry == DOCKER_HUB else registry


def default_upstream(registry: str) -> str:
    """Containerd's implicit upstream host for a namespace (docker.io -> registry-1.docker.io)."""
    return DOCKER_HUB_API_HOST if registry == DOCKER_HUB else registry


def candidate_dirs(namespace: str) -> list[str]:
    """Directory names containerd tries for a namespace, in order (hosts.go hostPaths on Linux)."""
    out = []
    special = host_port_dir_name(namespace)
    if special is not None:
        out.append(special)
    out += [namespace, DEFAULT_DIR]
    return out
