"""How containerd reaches one registry: the registry's own endpoint, its mirrors, their TLS and headers.

A registry's settings become its `hosts.toml` (docs/containerd.md, ## hosts.toml); `MirrorHealth`
decides which mirrors stay in it. The field descriptions are the format's documentation
(`docs/config-reference.md` is generated from them).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, model_validator

from nodecfg.containerd import names
from nodecfg.containerd.durations import parse_duration
from nodecfg.spec.fields import Capabilities, Capability, Headers, Strict, Timeout, name_rule, optional

PEM_CERT_MARK = "-----BEGIN CERTIFICATE-----"


class EndpointTLS(Strict):
    """Settings for one endpoint: the registry itself, or one mirror."""

    skipVerify: bool = Field(
        default=False,
        description="Do not verify the endpoint's TLS certificate chain and host name "
        "(hosts.toml `skip_verify`). Not allowed together with plain HTTP.",
    )
    ca: str | None = optional(
        "Inline PEM CA certificate(s) trusted for this endpoint, in addition to the "
        "system roots. nodecfg writes it beside hosts.toml and points `ca` at it.",
    )
    caFile: str | None = optional(
        "Path (as nodecfg sees it, e.g. a mounted Secret) of a PEM CA bundle. Its "
        "content is copied beside hosts.toml; relative paths are relative to the input file.",
    )
    clientCertFile: str | None = optional("Path of a PEM client certificate for mutual TLS (it may also hold the key).")
    clientKeyFile: str | None = optional("Path of the PEM private key for `clientCertFile`. Copied with mode 0600.")
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
    capabilities: Capabilities = Field(
        default_factory=lambda: list[Capability](["pull", "resolve"]),
        min_length=1,
        description="What the mirror is used for: `pull` (fetch by digest), `resolve` (tag to "
        "digest), `push`, `referrers` (rendered only for containerd >= 2.2).",
    )
    dialTimeout: Timeout | None = optional(
        "Connect timeout such as `500ms` (hosts.toml `dial_timeout`; rendered only "
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
        name_rule(names.check_host_port, parts.netloc, prefix=f"url host {parts.netloc!r}: ")
        if parts.scheme == "https" and "://" in url and self.plainHTTP:
            raise ValueError("plainHTTP is true but the url says https://")
        if len(set(self.capabilities)) != len(self.capabilities):
            raise ValueError("capabilities are listed twice")
        if self.is_plain_http() and self.has_tls_options():
            raise ValueError(
                "TLS options (skipVerify, ca, caFile, clientCertFile) cannot be set on a plain-HTTP "
                "mirror: containerd 1.6.25+, 1.7.7+ and 2.x then try HTTPS first (containerd#11647)"
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


class MirrorHealth(Strict):
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
                "plainHTTP: containerd 1.6.25+, 1.7.7+ and 2.x then try HTTPS first (containerd#11647)"
            )
        seen: set[str] = set()
        for m in self.mirrors:
            u = m.normalized_url()
            if u in seen:
                raise ValueError(f"mirror {u!r} is listed twice")
            seen.add(u)
        return self
