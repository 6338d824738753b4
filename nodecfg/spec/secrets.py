"""What counts as a secret: field names, header names, and the secret values of a parsed TOML tree.

Pure, and the one owner of these rules: the input loader hides values by them, render picks file
modes by them (a hosts.toml with a bearer token is 0600), plan redacts diffs and messages by
them, and doctor judges file permissions by them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

# Credential fields whose value is a secret: registries.yaml and docker config.json spellings, and
# containerd's `auth` table (`identity_token` is k3s's, `registrytoken` docker's).
SECRET_FIELDS = frozenset({"password", "auth", "identitytoken", "identityToken", "identity_token", "registrytoken"})
_SECRET_FIELDS_LOWER = frozenset(f.lower() for f in SECRET_FIELDS)
# A header carries a credential when its name holds one of these words: Authorization,
# Proxy-Authorization, Cookie, X-Api-Key, X-Auth-Token, X-Registry-Token, ...
_SECRET_HEADER_WORDS = ("auth", "token", "secret", "key", "cookie", "password")
# Tables whose every value is a credential, whatever the field is called (a misspelled
# `pasword` is still a password): containerd's `configs."<host>".auth` and 1.x `registry.auths`.
_AUTH_TABLES = frozenset({"auth", "auths"})
_NOT_SECRET_IN_AUTH = frozenset({"username"})  # shown, so a diff still says whose credentials change
# hosts.toml `[header]` / `[host."...".header]`, and config.toml's 1.x `registry.headers`.
_HEADER_TABLES = frozenset({"header", "headers"})


def is_secret_header(name: str) -> bool:
    """True when an HTTP header's values are credentials (compared case-insensitively)."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_HEADER_WORDS)


def is_secret_field(name: str) -> bool:
    """True when a field of that name holds a credential (`password`, `auth`, `identitytoken`, ...)."""
    lowered = name.lower()
    return lowered in _SECRET_FIELDS_LOWER or "password" in lowered or "token" in lowered


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)


def _walk(table: Mapping[str, Any], *, in_auth: bool, in_headers: bool) -> Iterator[str]:
    for key, value in table.items():
        lowered = key.lower()
        if in_auth and lowered in _NOT_SECRET_IN_AUTH:
            continue
        if isinstance(value, Mapping):
            # Exact names only: a table's key may be a host (`configs."token.example"`), whose
            # TLS paths are no secret.
            secret_table = in_auth or lowered in _AUTH_TABLES or lowered in _SECRET_FIELDS_LOWER
            yield from _walk(value, in_auth=secret_table, in_headers=lowered in _HEADER_TABLES)
        elif in_auth or is_secret_field(key) or (in_headers and is_secret_header(key)):
            yield from _strings(value)
        elif isinstance(value, list):  # an array of tables ([[...]]) may hold credentials too
            for item in value:
                if isinstance(item, Mapping):
                    yield from _walk(item, in_auth=False, in_headers=False)


def secret_values(tree: Mapping[str, Any]) -> frozenset[str]:
    """Every string in a parsed config.toml or hosts.toml that is, or may be, a credential.

    By place as well as by name: every value under an `auth`/`auths` table but the user name, any
    string value of a credential field anywhere, and the values of credential-bearing headers.
    """
    return frozenset(_walk(tree, in_auth=False, in_headers=False))
