"""The input format: `registries.yaml`, as pydantic models.

The field descriptions here are the format's documentation: `docs/config-reference.md` is generated
from them (`python -m nodecfg.spec.reference`), and a test fails when that file is stale.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    model_validator,
)

from nodecfg.containerd import names
from nodecfg.containerd.durations import Duration, parse_duration

Capability = Literal["pull", "resolve", "push", "referrers"]
ENV_REF_RE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
# An RFC 7230 token, as Go's httpguts.ValidHeaderFieldName checks it (fullmatch: `$` would let a
# trailing newline through).
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
PEM_CERT_MARK = "-----BEGIN CERTIFICATE-----"


def _registry_key(value: str) -> str:
    try:
        return names.check_registry_key(value)
    except names.NameError_ as e:
        raise ValueError(str(e)) from None


def _timeout(value: Any) -> Duration:
    if isinstance(value, Duration):  # a default, or a model built from another
        return value
    d = parse_duration(value)
    if d.nanoseconds < 0:
        # Go accepts "-5s"; as a dial timeout containerd would then fail every connection at once.
        raise ValueError("must not be negative (it is a timeout or a delay)")
    return d


def _lower_capabilities(value: Any) -> Any:
    # containerd compares capabilities case-insensitively (hosts.go); store them lower-case.
    if isinstance(value, list):
        return [v.lower() if isinstance(v, str) else v for v in value]
    return value


def _headers(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for k, v in value.items():
        out[k] = [v] if isinstance(v, str) else v
    return out


def _header_name(name: str) -> str:
    if not _HEADER_NAME_RE.fullmatch(name):
        raise ValueError(
            "not a valid HTTP header name (an RFC 7230 token: letters, digits and !#$%&'*+-.^_`|~): Go's net/http refuses every request with it"
        )
    return name


def _header_value(value: str) -> str:
    # Go's httpguts.ValidHeaderFieldValue: no control character but horizontal tab (so no CR, LF,
    # NUL, ESC or DEL); containerd's requests with one fail. Only the character's code is shown: the
    # value itself may be a token.
    bad = next((c for c in value if (c < " " and c != "\t") or c == "\x7f"), None)
    if bad is not None:
        raise ValueError(f"header value contains control character {ord(bad):#04x}: Go's net/http refuses every request with it")
    return value


RegistryKey = Annotated[str, AfterValidator(_registry_key)]
# Parsed once here; `str()` of the value is the text as written, which is what containerd reads.
Timeout = Annotated[Duration, PlainValidator(_timeout), PlainSerializer(str, return_type=str)]
Headers = Annotated[
    dict[Annotated[str, AfterValidator(_header_name)], list[Annotated[str, AfterValidator(_header_value)]]],
    BeforeValidator(_headers),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


class EndpointTLS(_Strict):
    """Settings for one endpoint: the registry itself, or one mirror."""

    skipVerify: bool = Field(
        default=False,
        description="Do not verify the endpoint's TLS certificate chain and host name "
        "(hosts.toml `skip_verify`). Not allowed together with plain HTTP.",
    )
    ca: str | None = Field(
        default=None,
        description="Inline PEM CA certificate(s) trusted for this endpoint, in addition to the "
        "system roots. nodecfg writes it beside hosts.toml and points `ca` at it.",
    )
    caFile: str | None = Field(
        default=None,
        description="Path (as nodecfg sees it, e.g. a mounted Secret) of a PEM CA bundle. Its "
        "content is copied beside hosts.toml; relative paths are relative to the input file.",
    )
    clientCertFile: str | None = Field(
        default=None,
        description="Path of a PEM client certificate for mutual TLS (it may also hold the key).",
    )
    clientKeyFile: str | None = Field(
        default=None,
        description="Path of the PEM private key for `clientCertFile`. Copied with mode 0600.",
    )
    headers: Headers = Field(
        default_factory=dict,
        description="HTTP headers sent with every request to this endpoint: a map of name to a "
        "string or a list of strings (hosts.toml `[header]`).",
    )

    def has_tls_options(self) -> bool:
        """True when any TLS setting is given (they make no sense on a plain-HTTP endpoint)."""
        return bool(self.skipVerify or self.ca or self.caFile or self.clientCertFile or self.clientKeyFile)

    @model_validator(mode="after")
    def _tls_consistent(self) -> EndpointTLS:
        if self.ca is not None and self.caFile is not None:
            raise ValueError("set either ca or caFile, not both")
        if self.ca is not None and PEM_CERT_MARK not in self.ca:
            raise ValueError(f"ca must hold at least one PEM certificate ({PEM_CERT_MARK} ...)")
        if self.clientKeyFile is not None and self.clientCertFile is None:
            raise ValueError("clientKeyFile needs clientCertFile")
        return self


def _mirror_shorthand(value: Any) -> Any:
    # `mirrors: [https://m.example]` is accepted as shorthand for `[{url: https://m.example}]`.
    return {"url": value} if isinstance(value, str) else value


class Mirror(EndpointTLS):
    """A mirror, tried before the registry itself, in the order listed."""

    url: str = Field(
        description="The mirror's URL: `https://host[:port][/path]`, `http://...` for plain HTTP, "
        "or `host[:port]` (https). containerd appends `/v2` to the path unless `overridePath`.",
    )
    plainHTTP: bool = Field(
        default=False,
        description="Talk plain HTTP to this mirror (same as writing an `http://` URL).",
    )
    overridePath: bool = Field(
        default=False,
        description="The URL path is the registry API root (Harbor or Artifactory proxy projects): "
        "containerd does not append `/v2` (hosts.toml `override_path`).",
    )
    capabilities: Annotated[list[Capability], BeforeValidator(_lower_capabilities)] = Field(
        default_factory=lambda: list[Capability](["pull", "resolve"]),
        min_length=1,
        description="What the mirror is used for: `pull` (fetch by digest), `resolve` (tag to "
        "digest), `push`, `referrers` (rendered only for containerd >= 2.2).",
    )
    dialTimeout: Timeout | None = Field(
        default=None,
        description="Connect timeout such as `500ms` (hosts.toml `dial_timeout`; rendered only "
        "for containerd >= 2.1, which is the first release that reads it).",
    )

    @model_validator(mode="after")
    def _url_valid(self) -> Mirror:
        url = self.url
        if any(c in url for c in " \t\r\n\x00"):
            raise ValueError("url must not contain whitespace or NUL")
        parts = urlsplit(url if "://" in url else f"https://{url}")
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"url scheme must be http or https, not {parts.scheme!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("url must not carry credentials; use `credentials:` with a file")
        if parts.query or parts.fragment:
            raise ValueError("url must not have a query or fragment")
        try:
            names.check_host_port(parts.netloc)
        except names.NameError_ as e:
            raise ValueError(f"url host {parts.netloc!r}: {e}") from None
        if parts.scheme == "https" and "://" in url and self.plainHTTP:
            raise ValueError("plainHTTP is true but the url says https://")
        if len(set(self.capabilities)) != len(self.capabilities):
            raise ValueError("capabilities are listed twice")
        if self.is_plain_http() and self.has_tls_options():
            raise ValueError(
                "TLS options (skipVerify, ca, caFile, clientCertFile) cannot be set on a plain-HTTP "
                "mirror: containerd >= 1.6.25 then tries HTTPS first (containerd#11647)"
            )
        return self

    def is_plain_http(self) -> bool:
        """True when this mirror is spoken to over plain HTTP."""
        return self.plainHTTP or self.url.startswith("http://")

    def normalized_url(self) -> str:
        """The URL with an explicit scheme and no trailing slash, as it goes into hosts.toml."""
        url = self.url.split("://", 1)[1] if "://" in self.url else self.url
        scheme = "http" if self.is_plain_http() else "https"
        url = url.rstrip("/")
        return f"{scheme}://{url}"

    def authority(self) -> str:
        """host[:port] containerd contacts for this mirror (the key for its credentials)."""
        return urlsplit(self.normalized_url()).netloc


class MirrorHealth(_Strict):
    """How the daemon checks mirrors and routes pulls around sick ones.

    Each mirror endpoint is probed as containerd reaches it (same URL, TLS, name resolution);
    after `outAfter` failed probes in a row it is left out of its registry's hosts.toml, after
    `backAfter` good ones it is put back in its place. Only hosts.toml changes: never a restart.
    """

    enabled: bool = Field(default=True, description="Probe the mirrors and route around sick ones.")
    interval: Timeout = Field(
        default=parse_duration("5s"), description="Time between two probes of one endpoint (jittered by up to 20 %)."
    )
    timeout: Timeout = Field(
        default=parse_duration("2s"), description="A probe that has no answer by then counts as failed (a hanging mirror)."
    )
    outAfter: int = Field(default=2, ge=1, le=100, description="Failed probes in a row that take an endpoint out.")
    backAfter: int = Field(default=3, ge=1, le=100, description="Good probes in a row that put it back.")

    @model_validator(mode="after")
    def _bounds(self) -> MirrorHealth:
        interval, timeout = self.interval.seconds, self.timeout.seconds
        if not 0.1 <= interval <= 3600:
            raise ValueError(f"interval must be between 100ms and 1h: {str(self.interval)!r}")
        if not 0 < timeout <= 60:
            raise ValueError(f"timeout must be more than 0 and at most 60s: {str(self.timeout)!r}")
        return self


class Registry(EndpointTLS):
    """How containerd reaches one registry (the host part of image references), or `*`."""

    mirrors: Annotated[
        list[Mirror], BeforeValidator(lambda v: [_mirror_shorthand(x) for x in v] if isinstance(v, list) else v)
    ] = Field(
        default_factory=list,
        description="Mirrors tried in order before the registry itself.",
    )
    fallback: bool = Field(
        default=True,
        description="Contact the registry itself when no mirror could serve the image. With "
        "`false`, the last mirror becomes the hosts.toml `server` and the registry is never "
        "contacted (omitting `server` is not enough: containerd then adds the upstream anyway).",
    )
    plainHTTP: bool = Field(
        default=False,
        description='The registry itself speaks plain HTTP (`server = "http://..."`).',
    )
    health: MirrorHealth | None = Field(
        default=None, description="Mirror health checks for this registry's mirrors (default: the top-level `mirrorHealth`)."
    )

    @model_validator(mode="after")
    def _registry_consistent(self) -> Registry:
        if not self.fallback and not self.mirrors:
            raise ValueError("fallback: false needs at least one mirror to pull from")
        if self.plainHTTP and self.has_tls_options():
            raise ValueError(
                "TLS options (skipVerify, ca, caFile, clientCertFile) cannot be combined with "
                "plainHTTP: containerd >= 1.6.25 then tries HTTPS first (containerd#11647)"
            )
        seen: set[str] = set()
        for m in self.mirrors:
            u = m.normalized_url()
            if u in seen:
                raise ValueError(f"mirror {u!r} is listed twice")
            seen.add(u)
        return self


FILE_SOURCES = ("dockerConfigJSON", "authJSON", "k3sRegistries")


def _credential_host(value: str) -> str:
    # The rule only: a value under `credentials` is never echoed (it may be a pasted secret).
    try:
        names.check_host_port(value)
    except names.NameError_:
        raise ValueError(
            "must be a host or host:port as containerd contacts it, such as harbor.example or 10.0.0.5:5000"
        ) from None
    return value


class Credential(_Strict):
    """Where credentials come from. Secrets are never written in this file."""

    dockerConfigJSON: str | None = Field(
        default=None,
        description="Path of a `.dockerconfigjson` (or `.dockercfg`) file, such as a mounted "
        "Kubernetes pull Secret: every registry in it gets its credentials.",
    )
    authJSON: str | None = Field(
        default=None,
        description='Path of an image-sync `auth.json` (`{"<registry>[/<namespace>]": {"username": ..., '
        '"password": ...}}`; `${ENV}` references are expanded). containerd sends one credential per '
        "host: a host's own entry wins over its namespace entries.",
    )
    k3sRegistries: str | None = Field(
        default=None,
        description="Path of a k3s/RKE2 `registries.yaml`: the `configs.<host>.auth` entries are used.",
    )
    registry: Annotated[str, AfterValidator(_credential_host)] | None = Field(
        default=None,
        description="The host the credentials are for, as containerd contacts it: a registry or "
        "a mirror's `host[:port]`. `docker.io` means Docker Hub (`registry-1.docker.io`).",
    )
    username: str | None = Field(
        default=None,
        description="User name, literal or a `${ENV_VAR}` reference.",
    )
    usernameFile: str | None = Field(
        default=None,
        description="Path of a file holding the user name (e.g. a basic-auth Secret's `username`).",
    )
    password: str | None = Field(
        default=None,
        description="Only a `${ENV_VAR}` reference is accepted: a literal password is refused.",
        json_schema_extra={"secret": True},
    )
    passwordFile: str | None = Field(
        default=None,
        description="Path of a file holding the password or token (one trailing newline is dropped).",
    )

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


def _ip(value: str) -> str:
    ipaddress.ip_address(value)
    return value


def _hostname(value: str) -> str:
    try:
        names.check_host_port(value)
    except names.NameError_ as e:
        raise ValueError(str(e)) from None
    if ":" in value:
        raise ValueError("a host alias is a host name without a port")
    return value


class HostAlias(_Strict):
    """An entry in a marked block of the node's /etc/hosts (hot: no restart; removed on uninstall)."""

    ip: Annotated[str, AfterValidator(_ip)] = Field(description="IPv4 or IPv6 address.")
    hostnames: list[Annotated[str, AfterValidator(_hostname)]] = Field(
        min_length=1, description="Host names that resolve to `ip`."
    )


class Restart(_Strict):
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


class Config(_Strict):
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
