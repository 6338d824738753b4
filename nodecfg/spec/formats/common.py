"""What every translator shares: the Translation it returns, problem locations, Docker Hub's name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nodecfg.containerd import names

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Translation:
    """A foreign input as nodecfg data, with warnings and (located) problems."""

    data: dict[str, Any]
    warnings: tuple[str, ...]
    problems: tuple[tuple[Loc, str], ...]


def hub(host: str) -> str:
    """Docker Hub under its one registry name (`docker.io`); any other host as it is."""
    return names.DOCKER_HUB if host in names.DOCKER_HUB_ALIASES else host
