"""The input format: `registries.yaml`, as pydantic models.

The field descriptions here are the format's documentation: `docs/config-reference.md` is generated
from them (`python -m nodecfg.spec.reference`), and a test fails when that file is stale.

This module holds the top-level `Config` and the models that are not about one registry
(credentials, host aliases, restarts). The per-registry models (endpoints, mirrors, their TLS and
health checks) are in `nodecfg.spec.registry`, the validated field types in `nodecfg.spec.fields`;
the names other modules use are re-exported here (`__all__`), so `nodecfg.spec.models` stays the
one import for the input's types.
"""

from __future__ import annotations

import hashlib
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from nodecfg.containerd import names
from nodecfg.containerd.durations import parse_duration
from nodecfg.spec.fields import (
    ENV_REF_RE,
    Capability,
    CredentialHost,
    Headers,
    HostName,
    IPAddress,
    RegistryKey,
    Strict,
    Timeout,
    optional,
)
from nodecfg.spec.registry import PEM_CERT_MARK, EndpointTLS, Mirror, MirrorHealth, Registry

__all__ = [
    "ENV_REF_RE",
    "FILE_SOURCES",
    "PEM_CERT_MARK",
    "Capability",
    "Config",
    "Credential",
    "EndpointTLS",
    "Headers",
    "HostAlias",
    "Mirror",
    "MirrorHealth",
    "Registry",
    "RegistryKey",
    "Restart",
    "Timeout",
]

FILE_SOURCES = ("dockerConfigJSON", "authJSON", "k3sRegistries")


class Credential(Strict):
    """Where credentials come from. Secrets are never written in this file."""

    dockerConfigJSON: str | None = optional(
        "Path of a `.dockerconfigjson` (or `.dockercfg`) file, such as a mounted "
        "Kubernetes pull Secret: every registry in it gets its credentials.",
    )
    authJSON: str | None = optional(
        'Path of an image-sync `auth.json` (`{"<registry>[/<namespace>]": {"username": ..., '
        '"password": ...}}`; `${ENV}` references are expanded). containerd sends one credential per '
        "host: a host's own entry wins over its namespace entries.",
    )
    k3sRegistries: str | None = optional("Path of a k3s/RKE2 `registries.yaml`: the `configs.<host>.auth` entries are used.")
    registry: CredentialHost | None = optional(
        "The host the credentials are for, as containerd contacts it: a registry or "
        "a mirror's `host[:port]`. `docker.io` means Docker Hub (`registry-1.docker.io`).",
    )
    username: str | None = optional("User name, literal or a `${ENV_VAR}` reference.")
    usernameFile: str | None = optional("Path of a file holding the user name (e.g. a basic-auth Secret's `username`).")
    password: str | None = optional(
        "Only a `${ENV_VAR}` reference is accepted: a literal password is refused.",
        json_schema_extra={"secret": True},
    )
    passwordFile: str | None = optional("Path of a file holding the password or token (one trailing newline is dropped).")

    @model_validator(mode="after")
    def _one_source(self) -> Credential:
        if self.password is not None and not ENV_REF_RE.match(self.password):
            raise ValueError(
                "password: a literal password is refused (this file is a ConfigMap anyone can "
                "read): put it in a Secret and use passwordFile, or write ${ENV_VAR}"
            )
        files = [n for n in FILE_SOURCES if getattr(self, n) is not None]
        if len(files) > 1:
            raise ValueError(f"give one credentials file per entry, not {' and '.join(files)}")
        if files:
            extra = [
                n for n in ("registry", "username", "usernameFile", "password", "passwordFile") if getattr(self, n) is not None
            ]
            if extra:
                raise ValueError(f"{files[0]} cannot be combined with {', '.join(extra)}")
            return self
        if self.registry is None:
            raise ValueError(
                "give a credentials file (dockerConfigJSON, authJSON, k3sRegistries), or registry with username and password"
            )
        if (self.username is None) == (self.usernameFile is None):
            raise ValueError("give exactly one of username or usernameFile")
        if (self.password is None) == (self.passwordFile is None):
            raise ValueError("give exactly one of password (${ENV_VAR}) or passwordFile")
        return self

    def auth_host(self) -> str:
        """The config.toml `configs."<host>"` key these credentials go under."""
        assert self.registry is not None
        reg = names.DOCKER_HUB if self.registry in names.DOCKER_HUB_ALIASES else self.registry
        return names.auth_host(reg)


class HostAlias(Strict):
    """An entry in a marked block of the node's /etc/hosts (hot: no restart; removed on uninstall)."""

    ip: IPAddress = Field(description="IPv4 or IPv6 address.")
    hostnames: list[HostName] = Field(min_length=1, description="Host names that resolve to `ip`.")


class Restart(Strict):
    """When containerd may be restarted for changes to config.toml (the daemon acts on this)."""

    policy: Literal["auto", "never"] = Field(
        default="auto",
        description="`auto`: restart containerd when config.toml changed; `never`: write it and "
        "report that a restart is pending.",
    )
    spread: Timeout = Field(
        default=parse_duration("0s"),
        description="Each node waits a delay in [0, spread) derived from its name before a "
        "restart, so a fleet does not restart at once.",
    )
    healthTimeout: Timeout = Field(
        default=parse_duration("60s"),
        description="How long containerd's CRI plugin may take to become healthy after a restart "
        "before the previous config.toml is restored.",
    )


class Config(Strict):
    """The whole input file."""

    version: Literal[1] = Field(description="Format version; must be 1.")
    registries: dict[RegistryKey, Registry] = Field(
        default_factory=dict,
        description="Per registry, as written in image references (`docker.io`, "
        "`10.0.0.5:5000`, `[fd00::1]:5000`); `*` is every registry without its own entry. "
        "Note that an entry of its own shadows `*` entirely, as in containerd.",
    )
    credentials: list[Credential] = Field(
        default_factory=list, description="Registry credentials, from files or the environment."
    )
    hostAliases: list[HostAlias] = Field(
        default_factory=list,
        description="Names for the node's /etc/hosts, written in a block between nodecfg's markers; "
        "the rest of the file is kept byte for byte. containerd resolves registry names through it.",
    )
    restart: Restart = Field(default_factory=Restart, description="containerd restart policy.")
    mirrorHealth: MirrorHealth = Field(
        default_factory=MirrorHealth,
        description="Mirror health checks for every registry without `health` of its own (the daemon only).",
    )

    def health_of(self, registry: str) -> MirrorHealth:
        """The health-check settings that apply to `registry`'s mirrors."""
        reg = self.registries.get(registry)
        return reg.health if reg is not None and reg.health is not None else self.mirrorHealth

    def digest(self) -> str:
        """The input's hash, the same on every node that reads the same input in whatever format.

        Of the model as read: no comments or key order of the file, no secrets (the model holds
        none), not the contents of the files it names. The daemon's `nodecfg_info` metric shows it.
        """
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        problems: list[str] = []
        wild = self.registries.get(names.WILDCARD)
        if wild is not None and wild.plainHTTP:
            problems.append(
                'registries."*".plainHTTP: the implicit upstream of every registry cannot be '
                "made plain HTTP; give each plain-HTTP registry its own entry"
            )
        for key, reg in self.registries.items():
            upstream = names.default_upstream(key)
            for i, m in enumerate(reg.mirrors):
                if m.authority() == upstream and urlsplit(m.normalized_url()).path in ("", "/v2"):
                    problems.append(
                        f"registries.{key!r}.mirrors[{i}].url: is the registry itself, which "
                        f"containerd contacts after the mirrors anyway (fallback): {m.url!r}"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self
