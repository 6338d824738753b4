"""Image-replacement rule inputs: `[{"repositoryPrefix": ..., "replaceWith": ...}]`."""

from __future__ import annotations

from typing import Any

from nodecfg.containerd import names
from nodecfg.spec.formats.common import Loc, Translation, hub


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
            key = hub(first)
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
