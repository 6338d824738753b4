"""Inputs users already have, translated into nodecfg's own format (pure); one module per format.

- k3s/RKE2 `registries.yaml` (`mirrors.<registry>.endpoint`, `configs.<host>.auth/tls`);
- a Kubernetes `.dockerconfigjson` (or the older `.dockercfg`);
- an image-sync `auth.json` (`{"<registry>[/<namespace>]": {"username", "password", "insecure"}}`);
- image-replacement rules (`[{"repositoryPrefix": ..., "replaceWith": ...}]`).

Each translator returns a plain dict in nodecfg's format (validated by the same models as a
native file), the warnings a user should read, and `Problem`s, located in the user's own file, for
what upstream containerd cannot express. Secrets never pass through here: credentials stay in the
user's file, which the translated input names as a credentials source (`authJSON`, ...).
"""

from __future__ import annotations

from typing import Any

from nodecfg.spec.formats.auth_json import (
    AUTH_JSON_FIELDS,
    AuthJSONEntry,
    auth_json_by_host,
    auth_json_entries,
    translate_auth_json,
    translate_dockerconfigjson,
)
from nodecfg.spec.formats.common import Loc, Translation
from nodecfg.spec.formats.image_rules import translate_image_rules
from nodecfg.spec.formats.k3s import K3S_TOP, k3s_auth_entries, translate_k3s

__all__ = [
    "FORMATS",
    "AuthJSONEntry",
    "Loc",
    "Translation",
    "auth_json_by_host",
    "auth_json_entries",
    "detect_format",
    "k3s_auth_entries",
    "translate",
    "translate_auth_json",
    "translate_dockerconfigjson",
    "translate_image_rules",
    "translate_k3s",
]

FORMATS = ("nodecfg", "k3s", "dockerconfigjson", "auth-json", "image-rules")


def detect_format(data: Any) -> str | None:
    """Which format parsed input `data` is in, or None when it is none of them."""
    if isinstance(data, list):
        return "image-rules" if all(isinstance(r, dict) and "repositoryPrefix" in r for r in data) else None
    if not isinstance(data, dict):
        return None
    if {"version", "registries", "credentials", "hostAliases", "restart"} & set(data):
        return "nodecfg"  # (without `version`, validation says it is missing)
    if data and set(data) <= K3S_TOP:
        return "k3s"
    if "auths" in data or "credsStore" in data or "credHelpers" in data:
        return "dockerconfigjson"
    if data and all(isinstance(v, dict) for v in data.values()):
        fields = {k for v in data.values() for k in v}
        if "auth" in fields or "email" in fields:
            return "dockerconfigjson"  # the older .dockercfg: registry -> {auth, email}
        if fields <= AUTH_JSON_FIELDS and all({"username", "password"} & set(v) for v in data.values()):
            return "auth-json"
    return None


def translate(fmt: str, data: Any, source: str) -> Translation:
    """Dispatch on `fmt` (one of FORMATS, not nodecfg)."""
    if fmt == "k3s":
        return translate_k3s(data, source)
    if fmt == "dockerconfigjson":
        return translate_dockerconfigjson(data, source)
    if fmt == "auth-json":
        return translate_auth_json(data, source)
    if fmt == "image-rules":
        return translate_image_rules(data, source)
    raise ValueError(f"no translator for {fmt!r}")
