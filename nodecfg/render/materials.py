"""What the input refers to outside itself: file contents and environment variables, as values.

The node layer reads them (I/O); render takes them as a `Materials` value and stays pure.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from nodecfg.spec.models import FILE_SOURCES, Config, EndpointTLS


@dataclass(frozen=True)
class Secret:
    """A secret string. Its repr and str never show the value; call reveal() where it must go."""

    _value: str

    def reveal(self) -> str:
        """The secret itself: only for writing it into config.toml."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__


@dataclass(frozen=True)
class Materials:
    """Contents of every file the input names (by the path as written), and the environment.

    `unreadable` maps a path that could not be read to the reason (never the content).
    """

    files: Mapping[str, bytes] = field(default_factory=dict)
    unreadable: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)


def material(materials: Materials, path: str, where: str, problems: list[str]) -> bytes | None:
    """Content of a referenced file, or None with a problem naming the field and path."""
    if path in materials.unreadable:
        problems.append(f"{where}: cannot read {path!r}: {materials.unreadable[path]}")
        return None
    data = materials.files.get(path)
    if data is None:
        problems.append(f"{where}: cannot read {path!r}: not found")
    return data


@dataclass(frozen=True)
class FileRef:
    """One file the input refers to: where in the input, the path, and whether it is secret."""

    location: str
    path: str
    secret: bool


def _endpoint_refs(loc: str, ep: EndpointTLS) -> Iterator[FileRef]:
    if ep.caFile:
        yield FileRef(f"{loc}.caFile", ep.caFile, False)
    if ep.clientCertFile:
        # A client cert file may hold the key too, so it is handled as secret.
        yield FileRef(f"{loc}.clientCertFile", ep.clientCertFile, True)
    if ep.clientKeyFile:
        yield FileRef(f"{loc}.clientKeyFile", ep.clientKeyFile, True)


def referenced_files(config: Config) -> list[FileRef]:
    """Every file path the input names, in input order."""
    refs: list[FileRef] = []
    for key, reg in config.registries.items():
        loc = f"registries.{key!r}"
        refs.extend(_endpoint_refs(loc, reg))
        for i, m in enumerate(reg.mirrors):
            refs.extend(_endpoint_refs(f"{loc}.mirrors[{i}]", m))
    for i, c in enumerate(config.credentials):
        loc = f"credentials[{i}]"
        for name in FILE_SOURCES:
            path = getattr(c, name)
            if path:
                refs.append(FileRef(f"{loc}.{name}", path, True))
        if c.usernameFile:
            refs.append(FileRef(f"{loc}.usernameFile", c.usernameFile, False))
        if c.passwordFile:
            refs.append(FileRef(f"{loc}.passwordFile", c.passwordFile, True))
    return refs
