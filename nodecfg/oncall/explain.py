"""Explain where containerd will pull an image from on this node, and why (pure).

The node layer reads what is there (config.toml, the hosts directories, which referenced files
exist) into a `NodeView`, owned by nodecfg or not; this module replays containerd's decisions on
it: which `config_path` root and directory are consulted (`host_port_`, `host:port`, `_default`),
what the hosts.toml yields (both docs/containerd.md, ## hosts.toml), and which credentials apply to
each endpoint (## config.toml, credentials). Nothing here says what nodecfg intends; it says what
containerd will do.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from nodecfg.containerd import names, versions
from nodecfg.containerd.config_toml import RegistrySettings
from nodecfg.containerd.hosts_toml import HostEntry, HostsFile, default_upstream_entry, parse_hosts_file, tries_https_first
from nodecfg.containerd.imageref import ImageRef
from nodecfg.containerd.names import candidate_dirs
from nodecfg.oncall.view import HostsDir, NodeView


@dataclass(frozen=True)
class Candidate:
    """One directory containerd looks for."""

    path: str
    exists: bool
    chosen: bool


@dataclass(frozen=True)
class Endpoint:
    """One endpoint in the order containerd tries it."""

    url: str
    request: str  # the manifest request for this image
    role: str  # mirror | server | upstream
    capabilities: tuple[str, ...]
    resolves: bool  # asked for the manifest of this reference
    fetches: bool  # asked for content by digest
    tls: tuple[str, ...]
    headers: tuple[str, ...]
    credentials: str
    on_failure: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "url": self.url,
            "request": self.request,
            "role": self.role,
            "capabilities": list(self.capabilities),
            "resolves": self.resolves,
            "fetches": self.fetches,
            "tls": list(self.tls),
            "headers": list(self.headers),
            "credentials": self.credentials,
            "onFailure": self.on_failure,
        }


@dataclass(frozen=True)
class Explanation:
    """Where containerd will pull an image from, and why."""

    input: str
    image: ImageRef
    target: str
    config: str
    candidates: tuple[Candidate, ...]
    source: str  # what decides the endpoints
    endpoints: tuple[Endpoint, ...]
    warnings: tuple[str, ...]
    outcome: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (`explain -o json`)."""
        return {
            "input": self.input,
            "image": str(self.image),
            "namespace": self.image.registry,
            "repository": self.image.repository,
            "containerd": self.target,
            "config": self.config,
            "candidates": [{"path": c.path, "exists": c.exists, "chosen": c.chosen} for c in self.candidates],
            "source": self.source,
            "endpoints": [e.to_json() for e in self.endpoints],
            "warnings": list(self.warnings),
            "outcome": self.outcome,
        }

    def lines(self) -> list[str]:
        """The human-readable explanation."""
        out = [f"image:      {self.image}" + (f"  (from {self.input!r})" if self.input != str(self.image) else "")]
        out.append(f"namespace:  {self.image.registry}; {self.target}")
        out.append(f"config:     {self.config}")
        if self.candidates:
            out.append("directory:  containerd takes the first that exists:")
            for c in self.candidates:
                mark = "-> chosen" if c.chosen else ("exists, not used" if c.exists else "absent")
                out.append(f"              {c.path}  {mark}")
        out.append(f"source:     {self.source}")
        out.append("endpoints, in the order containerd tries them:")
        for i, e in enumerate(self.endpoints, 1):
            use = ", ".join([*(["resolves this reference"] if e.resolves else []), *(["fetches content"] if e.fetches else [])])
            out.append(f"  {i}. {e.url}  [{e.role}; capabilities {', '.join(e.capabilities)}; {use or 'not used'}]")
            out.append(f"     request:     {e.request}")
            out.append(f"     tls:         {'; '.join(e.tls)}")
            if e.headers:
                out.append(f"     headers:     {', '.join(e.headers)} (values not shown)")
            out.append(f"     credentials: {e.credentials}")
            out.append(f"     on failure:  {e.on_failure}")
        out.append(f"outcome:    {self.outcome}")
        out += [f"warning:    {w}" for w in self.warnings]
        return out


def _is_proxy(host: str, namespace: str) -> bool:
    """True when containerd adds ?ns=: the contacted host is not the namespace (docker isProxy)."""
    return host != namespace and not (namespace == names.DOCKER_HUB and host == names.DOCKER_HUB_API_HOST)


def _tls_lines(e: HostEntry, view: NodeView, legacy_tls: str | None) -> tuple[str, ...]:
    target, missing = view.target.version, view.missing
    if e.scheme == "http":
        out = ["plain HTTP (no TLS)"]
        if e.has_tls_options():
            out.append(
                f"TLS options set too: containerd {target} tries HTTPS first (containerd#11647)"
                if tries_https_first(target, e.host)
                else f"TLS options set too: containerd {target} ignores them here (containerd#11647)"
            )
        return tuple(out)
    out = ["HTTPS, certificate NOT verified (skip_verify)" if e.skip_verify else "HTTPS, verified against the system roots"]
    out += [f"+ CA {p}" + (f" (MISSING: {missing[p]})" if p in missing else "") for p in e.ca]
    for cert, key in e.client:
        problems = [f"{p}: {missing[p]}" for p in (cert, key) if p and p in missing]
        pair = f"{cert} + {key}" if key else f"{cert} (cert and key)"
        out.append(f"client certificate {pair}" + (f" (MISSING: {'; '.join(problems)})" if problems else ""))
    if legacy_tls:
        out.append(legacy_tls)
    return tuple(out)


def _legacy_tls_note(host: str, settings: RegistrySettings) -> str | None:
    """What config.toml's legacy `configs."<host>".tls` does for this endpoint, if there is one."""
    if host not in settings.tls_hosts:
        return None
    if settings.roots:
        return f'config.toml configs."{host}".tls is not used next to config_path (1.x refuses to load CRI with both)'
    return f'+ config.toml configs."{host}".tls (legacy, used because config_path is unset)'


def _credentials(host: str, namespace: str, settings: RegistrySettings) -> str:
    kind = settings.auth.get(host)
    text = f'config.toml configs."{host}".auth ({kind})' if kind else f'none in config.toml (no configs."{host}".auth)'
    if host == names.default_upstream(namespace):
        text += "; a pod's imagePullSecrets for this registry take precedence"
    return text


def _endpoints(entries: tuple[HostEntry, ...], ref: ImageRef, view: NodeView, roles: list[str]) -> tuple[Endpoint, ...]:
    need_resolve = ref.digest is None
    usable = [e for e in entries if "pull" in e.capabilities and (not need_resolve or "resolve" in e.capabilities)]
    out = []
    for e, role in zip(entries, roles, strict=True):
        resolves = e in usable
        fetches = "pull" in e.capabilities
        request = f"{e.url}/{ref.repository}/manifests/{ref.object}"
        if _is_proxy(e.host, ref.registry):
            request += f"?ns={quote(ref.registry, safe='')}"
        if not resolves and not fetches:
            failure = "not used for pulls"
        elif not resolves:
            failure = f"not asked to resolve {ref.object!r} (needs pull and resolve); serves content by digest"
        elif e is usable[-1]:
            failure = "last endpoint: if it fails too, the pull fails with the first error that was not a 404"
        else:
            failure = "a connection error or any HTTP status >= 400 moves on to the next endpoint"
        out.append(
            Endpoint(
                url=e.url,
                request=request,
                role=role,
                capabilities=e.capabilities,
                resolves=resolves,
                fetches=fetches,
                tls=_tls_lines(e, view, _legacy_tls_note(e.host, view.registry)),
                headers=tuple(sorted({*e.header_names, *view.registry.header_names})),
                credentials=_credentials(e.host, ref.registry, view.registry),
                on_failure=failure,
            )
        )
    return tuple(out)


def _roles(entries: tuple[HostEntry, ...]) -> list[str]:
    return ["upstream" if e.implicit else ("server" if e.is_server else "mirror") for e in entries]


def _choose_dir(ref: ImageRef, view: NodeView, warnings: list[str]) -> tuple[list[Candidate], HostsDir | None]:
    """The directories containerd looks for, in order, and the one it uses (the first that exists)."""
    target = view.target.version
    candidates: list[Candidate] = []
    chosen: HostsDir | None = None
    for root in view.registry.roots:
        for name in candidate_dirs(ref.registry):
            path = posixpath.join(root, name)
            exists = path in view.dirs
            if name == names.DEFAULT_DIR and exists and not versions.supports_default_namespace(target):
                warnings.append(f"{path}: containerd {target} has no _default (needs 1.6.17 or 1.7.0): not consulted")
                exists = False
            hit = exists and chosen is None
            if hit:
                chosen = view.dirs[path]
            candidates.append(Candidate(path, exists, hit))
    if chosen is not None:
        later = [c for c in candidates if c.exists and not c.chosen]
        for c in later:
            why = "a per-registry directory shadows _default" if c.path.endswith(f"/{names.DEFAULT_DIR}") else "shadowed"
            warnings.append(f"{c.path} exists but is not used for {ref.registry}: {chosen.path} comes first ({why})")
    return candidates, chosen


def _legacy_entries(ref: ImageRef, settings: RegistrySettings, upstream: HostEntry) -> tuple[tuple[HostEntry, ...], str]:
    """Endpoints and their source when config_path is unset: config.toml's legacy mirrors, or the upstream."""
    endpoints_raw = settings.mirrors.get(ref.registry) or settings.mirrors.get(names.WILDCARD)
    if not endpoints_raw:
        return (upstream,), f"containerd's default: no hosts directory ({settings.roots_note})"
    listed = []
    for raw in endpoints_raw:
        # The legacy resolver uses an endpoint's path as it is, or /v2 when it has none.
        parts = urlsplit(raw if "://" in raw else f"https://{raw}")
        path = parts.path.rstrip("/") or "/v2"
        is_upstream = parts.netloc == upstream.host
        listed.append(HostEntry(raw, parts.scheme, parts.netloc, path, ("pull", "resolve"), is_server=is_upstream, implicit=is_upstream))  # fmt: skip
    if not any(e.host == upstream.host for e in listed):
        listed.append(upstream)
    key = ref.registry if ref.registry in settings.mirrors else "*"
    return tuple(listed), f"legacy config.toml registry.mirrors.{key!r} (config_path is unset)"


def _without_hosts_toml(
    chosen: HostsDir, hosts_path: str, parsed: HostsFile | None, upstream: HostEntry, warnings: list[str]
) -> tuple[tuple[HostEntry, ...], str]:
    """Endpoints and source when the chosen directory has no usable hosts.toml: the upstream, with its *.crt CAs."""
    entries: tuple[HostEntry, ...] = (upstream,)
    if parsed is not None:
        source = (
            f"{hosts_path} is REFUSED by containerd ({'; '.join(parsed.rejected)}): it logs "
            "'failed to decode hosts.toml' and pulls as if there were no file"
        )
        warnings.append(f"{hosts_path}: ignored by containerd: {'; '.join(parsed.rejected)}")
    else:
        source = f"{chosen.path} has no hosts.toml: containerd uses Docker's cert layout there (*.crt CAs, *.cert/*.key pairs)"
    if chosen.cert_files:
        upstream_ca = tuple(posixpath.join(chosen.path, f) for f in chosen.cert_files if f.endswith(".crt"))
        entries = (HostEntry("", upstream.scheme, upstream.host, upstream.path, upstream.capabilities, ca=upstream_ca, is_server=True, implicit=True),)  # fmt: skip
    return entries, source


def _dir_entries(
    chosen: HostsDir, ref: ImageRef, view: NodeView, upstream: HostEntry, warnings: list[str]
) -> tuple[tuple[HostEntry, ...], str, str]:
    """Endpoints, their source and an outcome caveat from the chosen hosts directory."""
    hosts_path = posixpath.join(chosen.path, "hosts.toml")
    parsed: HostsFile | None = None
    if chosen.error is not None:
        warnings.append(f"{hosts_path}: cannot be read ({chosen.error})")
    elif chosen.hosts_toml is not None and chosen.hosts_toml.strip():
        parsed = parse_hosts_file(chosen.hosts_toml, namespace=ref.registry, directory=chosen.path, target=view.target.version)
    if parsed is None or parsed.rejected:
        entries, source = _without_hosts_toml(chosen, hosts_path, parsed, upstream, warnings)
        return entries, source, ""
    owner = "owned by nodecfg" if chosen.owned else "not written by nodecfg"
    warnings += parsed.notes
    missing = [p for e in parsed.entries for p in e.files() if p in view.missing]
    outcome_extra = ""
    if missing:
        outcome_extra = (
            f" BUT every pull from {ref.registry} fails first: containerd reads "
            f"{', '.join(missing)} on each pull and cannot ({view.missing[missing[0]]})"
        )
    return parsed.entries, f"{hosts_path} ({owner})", outcome_extra


def _outcome(ref: ImageRef, endpoints: tuple[Endpoint, ...]) -> str:
    """Which endpoint is asked first, and what follows."""
    first = next((e for e in endpoints if e.resolves), None)
    if first is None:
        return f"no endpoint can resolve {ref.object!r}: the pull fails"
    return f"{first.url} is asked first" + (
        f"; then {', '.join(e.url for e in endpoints if e.resolves and e is not first)}"
        if sum(e.resolves for e in endpoints) > 1
        else "; nothing else is tried"
    )


def explain(text: str, ref: ImageRef, view: NodeView) -> Explanation:
    """Replay containerd's choice of hosts directory and endpoints for `ref` on `view`."""
    settings = view.registry
    warnings: list[str] = list(settings.problems)
    candidates, chosen = _choose_dir(ref, view, warnings)
    upstream = default_upstream_entry(ref.registry, view.target.version)
    outcome_extra = ""
    if not settings.roots:
        entries, source = _legacy_entries(ref, settings, upstream)
    elif chosen is None:
        entries = (upstream,)
        source = "containerd's default: no directory for this registry and no _default"
    else:
        entries, source, outcome_extra = _dir_entries(chosen, ref, view, upstream, warnings)
    endpoints = _endpoints(entries, ref, view, _roles(entries))
    return Explanation(
        input=text,
        image=ref,
        target=view.target.describe(),
        config=f"{settings.file}: {settings.roots_note}" + ("" if settings.exists else " (the file does not exist)"),
        candidates=tuple(candidates),
        source=source,
        endpoints=endpoints,
        warnings=tuple(warnings),
        outcome=_outcome(ref, endpoints) + outcome_extra,
    )
