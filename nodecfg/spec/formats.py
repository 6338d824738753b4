"""Inputs users already have, translated into nodecfg's own format (pure).

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

import posixpath
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from nodecfg.containerd import names

FORMATS = ("nodecfg", "k3s", "dockerconfigjson", "auth-json", "image-rules")
_AUTH_JSON_FIELDS = frozenset({"username", "password", "insecure"})
_K3S_TOP = frozenset({"mirrors", "configs"})
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Translation:
    """A foreign input as nodecfg data, with warnings and (located) problems."""

    data: dict[str, Any]
    warnings: tuple[str, ...]
    problems: tuple[tuple[Loc, str], ...]


def detect_format(data: Any) -> str | None:
    """Which format parsed input `data` is in, or None when it is none of them."""
    if isinstance(data, list):
        return "image-rules" if all(isinstance(r, dict) and "repositoryPrefix" in r for r in data) else None
    if not isinstance(data, dict):
        return None
    if {"version", "registries", "credentials", "hostAliases", "restart"} & set(data):
        return "nodecfg"  # (without `version`, validation says it is missing)
    if data and set(data) <= _K3S_TOP:
        return "k3s"
    if "auths" in data or "credsStore" in data or "credHelpers" in data:
        return "dockerconfigjson"
    if data and all(isinstance(v, dict) for v in data.values()):
        fields = {k for v in data.values() for k in v}
        if "auth" in fields or "email" in fields:
            return "dockerconfigjson"  # the older .dockercfg: registry -> {auth, email}
        if fields <= _AUTH_JSON_FIELDS and all({"username", "password"} & set(v) for v in data.values()):
            return "auth-json"
    return None


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
        unknown = sorted(set(entry) - _AUTH_JSON_FIELDS)
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
        by_host.setdefault(names.auth_host(_hub(host)), []).append(e)
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


def _hub(host: str) -> str:
    return names.DOCKER_HUB if host in names.DOCKER_HUB_ALIASES else host


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
            registries[_hub(host)] = {"plainHTTP": True}
    out: dict[str, Any] = {"version": 1, "registries": registries, "credentials": [{"authJSON": posixpath.basename(source)}]}
    return Translation(out, tuple(warnings), tuple(problems + more))


def translate_dockerconfigjson(data: Any, source: str) -> Translation:
    """A pull Secret's `.dockerconfigjson`: credentials for every registry in it."""
    del data  # read again, with its secrets, when credentials are resolved
    out = {"version": 1, "credentials": [{"dockerConfigJSON": posixpath.basename(source)}]}
    return Translation(out, (), ())


def _k3s_mirror_url(endpoint: str) -> tuple[str, bool]:
    """A k3s endpoint as a nodecfg mirror URL and overridePath (k3s uses a given path as the API root)."""
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path}", bool(path) and path != "/v2"


def translate_k3s(data: dict[str, Any], source: str) -> Translation:
    """k3s/RKE2 registries.yaml: mirrors with endpoints, configs with tls and auth per host."""
    problems: list[tuple[Loc, str]] = []
    warnings: list[str] = []
    mirrors = data.get("mirrors") or {}
    configs = data.get("configs") or {}
    if not isinstance(mirrors, dict):
        problems.append((("mirrors",), "must be a map of registry -> {endpoint: [...]}"))
        mirrors = {}
    if not isinstance(configs, dict):
        problems.append((("configs",), "must be a map of host -> {auth, tls}"))
        configs = {}
    tls: dict[str, dict[str, Any]] = {}
    has_auth = False
    for host, cfg in configs.items():
        if not isinstance(cfg, dict):
            problems.append((("configs", host), "must be a map with auth and/or tls"))
            continue
        unknown = sorted(set(cfg) - {"auth", "tls"})
        if unknown:
            problems.append((("configs", host), f"unknown field(s) {', '.join(unknown)}"))
        has_auth = has_auth or bool(cfg.get("auth"))
        t = cfg.get("tls") or {}
        if not isinstance(t, dict):
            problems.append((("configs", host, "tls"), "must be a map"))
            continue
        mapped: dict[str, Any] = {}
        for k3s_name, ours in (
            ("ca_file", "caFile"),
            ("cert_file", "clientCertFile"),
            ("key_file", "clientKeyFile"),
            ("insecure_skip_verify", "skipVerify"),
        ):
            if t.get(k3s_name):
                mapped[ours] = t[k3s_name]
        unknown = sorted(set(t) - {"ca_file", "cert_file", "key_file", "insecure_skip_verify"})
        if unknown:
            problems.append((("configs", host, "tls"), f"unknown field(s) {', '.join(unknown)}"))
        tls[_hub(str(host))] = mapped
    registries: dict[str, Any] = {}
    used_tls: set[str] = set()
    for registry, m in mirrors.items():
        key = _hub(str(registry))
        if not isinstance(m, dict):
            problems.append((("mirrors", registry), "must be a map with endpoint"))
            continue
        if m.get("rewrite"):
            problems.append(
                (
                    ("mirrors", registry, "rewrite"),
                    "refused: upstream containerd cannot rewrite repository paths (a k3s patch does); "
                    "mirror the images under the same paths, or use an overridePath mirror namespace",
                )
            )
        unknown = sorted(set(m) - {"endpoint", "rewrite"})
        if unknown:
            problems.append((("mirrors", registry), f"unknown field(s) {', '.join(unknown)}"))
        endpoints = m.get("endpoint") or []
        if not isinstance(endpoints, list) or not all(isinstance(e, str) for e in endpoints):
            problems.append((("mirrors", registry, "endpoint"), "must be a list of URLs"))
            continue
        entry: dict[str, Any] = {"mirrors": []}
        upstream = names.default_upstream(key) if key != names.WILDCARD else None
        for e in endpoints:
            url, override = _k3s_mirror_url(e)
            authority = urlsplit(url).netloc
            is_self = authority in (upstream, key) or (key == names.DOCKER_HUB and authority in names.DOCKER_HUB_ALIASES)
            if upstream is not None and is_self and not override:
                # The registry itself: k3s lists it to set its scheme; containerd tries it last anyway.
                if url.startswith("http://"):
                    entry["plainHTTP"] = True
                continue
            mirror: dict[str, Any] = {"url": url}
            if override:
                mirror["overridePath"] = True
            mirror.update(tls.get(authority, {}))
            if authority in tls:
                used_tls.add(authority)
            entry["mirrors"].append(mirror)
        if key in tls:
            entry.update(tls[key])
            used_tls.add(key)
        if not entry["mirrors"]:
            del entry["mirrors"]
        registries[key] = entry
    # k3s applies configs.<host>.tls wherever that host is contacted: as a mirror (above) and
    # when images are pulled from it directly, which needs a registry entry of its own.
    for host, settings in tls.items():
        if host in registries:
            if host not in used_tls:
                registries[host].update(settings)
        elif settings:
            registries[host] = dict(settings)
    out: dict[str, Any] = {"version": 1, "registries": registries}
    if has_auth:
        out["credentials"] = [{"k3sRegistries": posixpath.basename(source)}]
    return Translation(out, tuple(warnings), tuple(problems))


def k3s_auth_entries(data: Any) -> dict[str, dict[str, Any]]:
    """`configs.<host>.auth` of a k3s registries.yaml, by host as written."""
    configs = data.get("configs") if isinstance(data, dict) else None
    out: dict[str, dict[str, Any]] = {}
    for host, cfg in (configs or {}).items() if isinstance(configs, dict) else []:
        auth = cfg.get("auth") if isinstance(cfg, dict) else None
        if isinstance(auth, dict) and auth:
            out[str(host)] = auth
    return out


def _replacement_url(replace: str) -> tuple[str, bool]:
    """`harbor.example/proxy` -> (`https://harbor.example/v2/proxy`, overridePath)."""
    text = replace.strip().rstrip("/")
    scheme = "https"
    if "://" in text:
        scheme, text = text.split("://", 1)
    host, _, path = text.partition("/")
    if path:
        return f"{scheme}://{host}/v2/{path}", True
    return f"{scheme}://{host}", False


def translate_image_rules(data: list[Any], source: str) -> Translation:
    """Image-replacement rules: whole-registry prefixes become mirrors, never contacting the original."""
    del source
    problems: list[tuple[Loc, str]] = []
    registries: dict[str, Any] = {}
    for i, rule in enumerate(data):
        if not isinstance(rule, dict) or set(rule) - {"repositoryPrefix", "replaceWith"}:
            problems.append(((i,), "a rule is {repositoryPrefix: ..., replaceWith: ...}"))
            continue
        prefix, replace = rule.get("repositoryPrefix"), rule.get("replaceWith")
        if not isinstance(prefix, str) or not isinstance(replace, str) or not replace.strip():
            problems.append(((i,), "repositoryPrefix and replaceWith must be strings; replaceWith must not be empty"))
            continue
        prefix = prefix.strip().rstrip("/")
        if prefix == "":
            key = names.WILDCARD
        else:
            first, _, rest = prefix.partition("/")
            looks_like_host = "." in first or ":" in first or first == "localhost"
            if not looks_like_host:
                problems.append(
                    (
                        (i, "repositoryPrefix"),
                        f"refused: {prefix!r} is a path on docker.io, and containerd chooses mirrors per "
                        "registry, not per repository; use 'docker.io' to mirror all of Docker Hub",
                    )
                )
                continue
            if rest:
                problems.append(
                    (
                        (i, "repositoryPrefix"),
                        f"refused: {prefix!r} has a path; containerd chooses mirrors per registry "
                        f"(one hosts directory each), so only {first!r} as a whole can be mirrored",
                    )
                )
                continue
            key = _hub(first)
        url, override = _replacement_url(replace)
        mirror: dict[str, Any] = {"url": url}
        if override:
            mirror["overridePath"] = True
        # A replaced image is never pulled from its original registry: no fallback.
        registries.setdefault(key, {"mirrors": [], "fallback": False})["mirrors"].append(mirror)
    warnings = [
        f"registries.{k!r}: fallback is false, as with image replacement (the original registry is never "
        "contacted); edit the converted file (`nodecfg convert`) to allow it"
        for k in sorted(registries)
    ]
    return Translation({"version": 1, "registries": registries}, tuple(warnings), tuple(problems))


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
