"""Legacy CRI registry settings in config.toml (`mirrors`, `configs.*.tls`), as plain values.

containerd refuses `mirrors` and (1.x) `configs.*.tls` next to `config_path`, so nodecfg moves
them into hosts.toml. What it moved is kept in nodecfg's state, because after the first apply it
is no longer in config.toml but must still be rendered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class LegacyTLS:
    """`configs."<host>".tls`: applies to every endpoint containerd contacts at that host."""

    skip_verify: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain-data form for nodecfg's state file."""
        return {"skipVerify": self.skip_verify, "caFile": self.ca_file, "certFile": self.cert_file, "keyFile": self.key_file}


@dataclass(frozen=True)
class Legacy:
    """Legacy settings found in config.toml: endpoints per registry, TLS per host."""

    mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tls: Mapping[str, LegacyTLS] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.mirrors or self.tls)

    def merged(self, newer: Legacy) -> Legacy:
        """Settings of `newer` replace those of self, key by key."""
        return Legacy({**self.mirrors, **newer.mirrors}, {**self.tls, **newer.tls})

    def to_json(self) -> dict[str, Any]:
        """Plain-data form for nodecfg's state file."""
        return {
            "mirrors": {k: list(v) for k, v in sorted(self.mirrors.items())},
            "tls": {k: v.to_json() for k, v in sorted(self.tls.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Legacy:
        """Inverse of to_json."""
        mirrors = {str(k): tuple(str(u) for u in v) for k, v in (data.get("mirrors") or {}).items()}
        tls = {
            str(k): LegacyTLS(
                skip_verify=bool(v.get("skipVerify")),
                ca_file=v.get("caFile"),
                cert_file=v.get("certFile"),
                key_file=v.get("keyFile"),
            )
            for k, v in (data.get("tls") or {}).items()
        }
        return cls(mirrors, tls)


def extract_legacy(registry: Mapping[str, Any], where: str) -> tuple[Legacy, list[str]]:
    """Read `mirrors` and `configs.*.tls` from a CRI registry table (plain dict); return problems."""
    problems: list[str] = []
    mirrors: dict[str, tuple[str, ...]] = {}
    raw_mirrors = registry.get("mirrors") or {}
    if not isinstance(raw_mirrors, Mapping):
        problems.append(f"{where}.mirrors: must be a table")
        raw_mirrors = {}
    for key, value in raw_mirrors.items():
        endpoints = value.get("endpoint") if isinstance(value, Mapping) else None
        if not isinstance(endpoints, list) or not all(isinstance(e, str) for e in endpoints):
            problems.append(f"{where}.mirrors.{key!r}.endpoint: must be a list of URLs")
            continue
        mirrors[str(key)] = tuple(endpoints)
    tls: dict[str, LegacyTLS] = {}
    raw_configs = registry.get("configs") or {}
    if isinstance(raw_configs, Mapping):
        for host, value in raw_configs.items():
            t = value.get("tls") if isinstance(value, Mapping) else None
            if t is None:
                continue
            if not isinstance(t, Mapping):
                problems.append(f"{where}.configs.{host!r}.tls: must be a table")
                continue
            tls[str(host)] = LegacyTLS(
                skip_verify=bool(t.get("insecure_skip_verify", False)),
                ca_file=t.get("ca_file") or None,
                cert_file=t.get("cert_file") or None,
                key_file=t.get("key_file") or None,
            )
    return Legacy(mirrors, tls), problems


def endpoint_to_mirror(url: str) -> tuple[str, bool]:
    """A legacy endpoint as a hosts.toml host URL and its override_path.

    The legacy CRI resolver used an endpoint's path as the API root as it was, adding `/v2` only
    when there was no path (pkg/cri/server/image_pull.go registryHosts), which in hosts.toml terms
    is `override_path = true` for any endpoint that has a path.
    """
    parts = urlsplit(url if "://" in url else f"https://{url}")
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path}", bool(path) and path != "/v2"
