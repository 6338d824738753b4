"""k3s/RKE2 `registries.yaml` inputs: `mirrors.<registry>.endpoint`, `configs.<host>.auth/tls`."""

from __future__ import annotations

import posixpath
from typing import Any
from urllib.parse import urlsplit

from nodecfg.containerd import names
from nodecfg.spec.formats.common import Loc, Translation, hub

K3S_TOP = frozenset({"mirrors", "configs"})


def _k3s_mirror_url(endpoint: str) -> tuple[str, bool]:
    """A k3s endpoint as a nodecfg mirror URL and overridePath (k3s uses a given path as the API root)."""
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path}", bool(path) and path != "/v2"


_TLS_FIELDS = (
    ("ca_file", "caFile"),
    ("cert_file", "clientCertFile"),
    ("key_file", "clientKeyFile"),
    ("insecure_skip_verify", "skipVerify"),
)


def _sections(data: dict[str, Any], problems: list[tuple[Loc, str]]) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """`mirrors` and `configs` as maps (empty, with a problem, when they are something else)."""
    mirrors = data.get("mirrors") or {}
    configs = data.get("configs") or {}
    if not isinstance(mirrors, dict):
        problems.append((("mirrors",), "must be a map of registry -> {endpoint: [...]}"))
        mirrors = {}
    if not isinstance(configs, dict):
        problems.append((("configs",), "must be a map of host -> {auth, tls}"))
        configs = {}
    return mirrors, configs


def _tls_by_host(configs: dict[Any, Any], problems: list[tuple[Loc, str]]) -> tuple[dict[str, dict[str, Any]], bool]:
    """`configs.<host>.tls` in nodecfg's field names, by registry; and whether any host has auth."""
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
        mapped = {ours: t[k3s_name] for k3s_name, ours in _TLS_FIELDS if t.get(k3s_name)}
        unknown = sorted(set(t) - {k3s_name for k3s_name, _ in _TLS_FIELDS})
        if unknown:
            problems.append((("configs", host, "tls"), f"unknown field(s) {', '.join(unknown)}"))
        tls[hub(str(host))] = mapped
    return tls, has_auth


def _checked_endpoints(registry: Any, m: Any, problems: list[tuple[Loc, str]]) -> list[str] | None:
    """A mirror entry's endpoint list, or None (with a problem) when the entry cannot be used."""
    if not isinstance(m, dict):
        problems.append((("mirrors", registry), "must be a map with endpoint"))
        return None
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
        return None
    return endpoints


def _registry_entry(key: str, endpoints: list[str], tls: dict[str, dict[str, Any]], used_tls: set[str]) -> dict[str, Any]:
    """The entry for registry `key` mirrored at `endpoints`; the tls hosts it uses go in `used_tls`."""
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
    return entry


def translate_k3s(data: dict[str, Any], source: str) -> Translation:
    """k3s/RKE2 registries.yaml: mirrors with endpoints, configs with tls and auth per host."""
    problems: list[tuple[Loc, str]] = []
    warnings: list[str] = []
    mirrors, configs = _sections(data, problems)
    tls, has_auth = _tls_by_host(configs, problems)
    registries: dict[str, Any] = {}
    used_tls: set[str] = set()
    for registry, m in mirrors.items():
        endpoints = _checked_endpoints(registry, m, problems)
        if endpoints is not None:
            key = hub(str(registry))
            registries[key] = _registry_entry(key, endpoints, tls, used_tls)
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
