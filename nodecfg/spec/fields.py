"""The input's field types: Annotated types that carry their own validation, and the strict base model.

Each validator turns a bad value into the ValueError pydantic reports as `<field path>: <rule>`;
the containerd naming rules themselves live in `nodecfg.containerd.names` (one owner).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, PlainValidator

from nodecfg.containerd import names
from nodecfg.containerd.durations import Duration, parse_duration

Capability = Literal["pull", "resolve", "push", "referrers"]
ENV_REF_RE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
# An RFC 7230 token, as Go's httpguts.ValidHeaderFieldName checks it (fullmatch: `$` would let a
# trailing newline through).
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class Strict(BaseModel):
    """The base of every input model: unknown fields are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


def name_rule(rule: Callable[[str], str], value: str, *, prefix: str = "", instead: str | None = None) -> str:
    """Apply one of containerd's naming rules (`names.check_*`) inside a validator.

    The rule's NameError_ becomes the ValueError pydantic reports: its message after `prefix`, or
    `instead` where the value must not be echoed (it may be a pasted secret).
    """
    try:
        return rule(value)
    except names.NameError_ as e:
        raise ValueError(instead if instead is not None else f"{prefix}{e}") from None


def _registry_key(value: str) -> str:
    return name_rule(names.check_registry_key, value)


def _timeout(value: Any) -> Duration:
    if isinstance(value, Duration):  # a default, or a model built from another
        return value
    d = parse_duration(value)
    if d.nanoseconds < 0:
        # Go accepts "-5s"; as a dial timeout containerd would then fail every connection at once.
        raise ValueError("must not be negative (it is a timeout or a delay)")
    return d


def _lower_capabilities(value: Any) -> Any:
    # containerd compares capabilities case-insensitively (docs/containerd.md, ## hosts.toml); store them lower-case.
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


def _credential_host(value: str) -> str:
    # The rule only: a value under `credentials` is never echoed (it may be a pasted secret).
    return name_rule(
        names.check_host_port,
        value,
        instead="must be a host or host:port as containerd contacts it, such as harbor.example or 10.0.0.5:5000",
    )


def _ip(value: str) -> str:
    ipaddress.ip_address(value)
    return value


def _hostname(value: str) -> str:
    name_rule(names.check_host_port, value)
    if ":" in value:
        raise ValueError("a host alias is a host name without a port")
    return value


RegistryKey = Annotated[str, AfterValidator(_registry_key)]
# Parsed once here; `str()` of the value is the text as written, which is what containerd reads.
Timeout = Annotated[Duration, PlainValidator(_timeout), PlainSerializer(str, return_type=str)]
Headers = Annotated[
    dict[Annotated[str, AfterValidator(_header_name)], list[Annotated[str, AfterValidator(_header_value)]]],
    BeforeValidator(_headers),
]
Capabilities = Annotated[list[Capability], BeforeValidator(_lower_capabilities)]
CredentialHost = Annotated[str, AfterValidator(_credential_host)]
IPAddress = Annotated[str, AfterValidator(_ip)]
HostName = Annotated[str, AfterValidator(_hostname)]


def optional(description: str, **extra: Any) -> Any:
    """A field the input may leave out (None), with the description docs/config-reference.md shows."""
    return Field(default=None, description=description, **extra)
