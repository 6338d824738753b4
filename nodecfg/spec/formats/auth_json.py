"""containers-auth.json (an image-sync `auth.json`) and docker config.json (`.dockerconfigjson`) inputs."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from nodecfg.containerd import names
from nodecfg.spec.formats.common import Loc, Translation, hub

AUTH_JSON_FIELDS = frozenset({"username", "password", "insecure"})


def _registry_of_key(key: str) -> tuple[str, str]:
    """An auth.json key `registry[/namespace]` as (contacted host, namespace or '')."""
    host, _, namespace = key.strip().rstrip("/").partition("/")
    if "://" in key:
        parts = urlsplit(key.strip())
        host, namespace = parts.netloc, parts.path.strip("/")
    return host, namespace


@dataclass(frozen=True)
class AuthJSONEntry:
    """One auth.json entry (values are kept in the user's file; this holds them only in memory)."""

    key: str
    username: str
    password: str
    insecure: bool


def auth_json_entries(data: Any) -> tuple[dict[str, AuthJSONEntry], list[tuple[Loc, str]]]:
    """Entries by key; problems for malformed ones (never showing a value)."""
    problems: list[tuple[Loc, str]] = []
    out: dict[str, AuthJSONEntry] = {}
    if not isinstance(data, dict):
        return {}, [((), "an auth.json is a JSON object of registry -> {username, password}")]
    for key, entry in data.items():
        if not isinstance(entry, dict):
            problems.append(((key,), "must be an object with username and password"))
            continue
        unknown = sorted(set(entry) - AUTH_JSON_FIELDS)
        if unknown:
            problems.append(((key,), f"unknown field(s) {', '.join(unknown)} (auth.json has username, password, insecure)"))
            continue
        user, password, insecure = entry.get("username", ""), entry.get("password", ""), entry.get("insecure", False)
        if not isinstance(user, str) or not isinstance(password, str):
            problems.append(((key,), "username and password must be strings"))
            continue
        if not isinstance(insecure, bool):
            problems.append(((key, "insecure"), "must be true or false"))
            continue
        host, _ = _registry_of_key(str(key))
        try:
            names.check_host_port(host)
        except names.NameError_ as e:
            problems.append(((key,), f"registry {host!r}: {e}"))
            continue
        out[str(key)] = AuthJSONEntry(str(key), user, password, insecure)
    return out, problems


def auth_json_by_host(
    entries: dict[str, AuthJSONEntry],
) -> tuple[dict[str, AuthJSONEntry], list[str], list[tuple[Loc, str]]]:
    """The one entry per contacted host that containerd can use; warnings; problems.

    containerd sends one credential per host. An image-sync tool picks the longest matching key
    per image; on a node the host's own key (`quay.io`) is the match for every image on that
    host, so it wins. Namespace keys (`quay.io/org`) are used only when the host has no key of
    its own and they all carry the same credentials; otherwise the choice is refused.
    """
    by_host: dict[str, list[AuthJSONEntry]] = {}
    for e in entries.values():
        host, _ = _registry_of_key(e.key)
        by_host.setdefault(names.auth_host(hub(host)), []).append(e)
    out: dict[str, AuthJSONEntry] = {}
    warnings: list[str] = []
    problems: list[tuple[Loc, str]] = []
    for host, group in sorted(by_host.items()):
        own = [e for e in group if not _registry_of_key(e.key)[1]]
        scoped = [e for e in group if _registry_of_key(e.key)[1]]
        if own:
            out[host] = own[0]
            for e in scoped:
                if (e.username, e.password) != (own[0].username, own[0].password):
                    warnings.append(
                        f"auth.json {e.key!r}: not used: containerd sends one credential per host, "
                        f"so every image on {host} uses the entry {own[0].key!r}"
                    )
            continue
        creds = {(e.username, e.password) for e in scoped}
        if len(creds) > 1:
            keys = ", ".join(repr(e.key) for e in scoped)
            problems.append(
                (
                    (scoped[0].key,),
                    f"{keys} carry different credentials for one host, {host}: containerd sends one "
                    f"credential per host; add an entry for {host} itself to choose",
                )
            )
            continue
        out[host] = scoped[0]
        if len(scoped) == 1:
            warnings.append(f"auth.json {scoped[0].key!r}: used for every image on {host} (containerd authenticates per host)")
    return out, warnings, problems


def translate_auth_json(data: Any, source: str) -> Translation:
    """auth.json: credentials from the file itself; `insecure: true` makes the registry plain HTTP."""
    entries, problems = auth_json_entries(data)
    _, warnings, more = auth_json_by_host(entries)
    registries: dict[str, Any] = {}
    for e in entries.values():
        host, namespace = _registry_of_key(e.key)
        if e.insecure:
            if namespace:
                problems.append(((e.key, "insecure"), "plain HTTP is per registry: set it on the registry's own key"))
                continue
            registries[hub(host)] = {"plainHTTP": True}
    out: dict[str, Any] = {"version": 1, "registries": registries, "credentials": [{"authJSON": posixpath.basename(source)}]}
    return Translation(out, tuple(warnings), tuple(problems + more))


def translate_dockerconfigjson(data: Any, source: str) -> Translation:
    """A pull Secret's `.dockerconfigjson`: credentials for every registry in it."""
    del data  # read again, with its secrets, when credentials are resolved
    out = {"version": 1, "credentials": [{"dockerConfigJSON": posixpath.basename(source)}]}
    return Translation(out, (), ())
