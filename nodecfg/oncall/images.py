"""`nodecfg images`: map the images a node has to where a mirror must hold them (pure).

The destination of each image is the repository containerd will ask the mirror for once nodes
pull through it: `<mirror host>[/<namespace>]/<repository>` with the same tag or digest, where a
namespace is the path of an `overridePath` mirror. The result is an image-sync `images.json`
(`{"<source>": "<destination>"}`), so the mirror can be filled before nodes switch to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from nodecfg.containerd import names
from nodecfg.containerd.imageref import ImageRef, ReferenceError_, parse_reference
from nodecfg.spec.models import Config, Mirror


class MirrorError(ValueError):
    """A mirror that cannot be written as an image-sync destination (the message says why)."""


@dataclass(frozen=True)
class Synced:
    """The images.json mapping and what the admin should know about it."""

    mapping: dict[str, str]
    warnings: tuple[str, ...]


def destination_prefix(mirror: str) -> str:
    """The destination prefix for a mirror: repository paths are appended to it.

    `harbor.example/proxy` from `harbor.example/proxy` or from an override_path URL
    `https://harbor.example/v2/proxy`.
    """
    text = mirror.strip().rstrip("/")
    if "://" in text:
        text = text.split("://", 1)[1]
    host, _, path = text.partition("/")
    try:
        names.check_host_port(host)
    except names.NameError_ as e:
        raise MirrorError(f"mirror {mirror!r}: {e}") from None
    if path.startswith("v2/"):
        path = path[3:]
    elif path == "v2":
        path = ""
    return f"{host}/{path}" if path else host


def _prefix_of(m: Mirror) -> str:
    path = urlsplit(m.normalized_url()).path.strip("/")
    if path and not m.overridePath and path != "v2":
        raise MirrorError(f"mirror {m.url!r}: containerd asks it for <path>/v2/<repository>, which no image reference can name")
    return destination_prefix(m.normalized_url() if m.overridePath else f"{m.authority()}")


def _configured_mirror(config: Config, registry: str) -> Mirror | None:
    reg = config.registries.get(registry) or config.registries.get(names.WILDCARD)
    return reg.mirrors[0] if reg is not None and reg.mirrors else None


def tagged_or_digest(tags: Sequence[str], digests: Sequence[str]) -> list[str]:
    """One image's references to sync: its tags, and a digest only for a repository with no tag.

    Copying a tag copies the manifest with its digest, so pods that pin the digest find it too.
    """
    tagged = {t.rsplit(":", 1)[0] for t in tags}
    return [*tags, *(d for d in digests if d.split("@", 1)[0] not in tagged)]


def image_mapping(
    refs: Iterable[str],
    *,
    mirror: str | None,
    config: Config | None,
    registries: Sequence[str] = (),
) -> Synced:
    """Source -> destination for every image reference (tags and digests as the node lists them).

    `mirror` is used for every image; without it, each image goes to the first mirror the input
    gives its registry (or `*`). `registries` limits the images to those registries.
    """
    warnings: list[str] = []
    mapping: dict[str, str] = {}
    fixed = destination_prefix(mirror) if mirror else None
    by_dest: dict[str, str] = {}
    for text in sorted(set(refs)):
        try:
            ref = parse_reference(text)
        except ReferenceError_ as e:
            warnings.append(f"skipped {text!r}: {e}")
            continue
        if registries and ref.registry not in registries:
            continue
        prefix = fixed
        if prefix is None:
            m = _configured_mirror(config, ref.registry) if config is not None else None
            if m is None:
                warnings.append(f"skipped {ref}: the input gives {ref.registry} no mirror (pass --mirror)")
                continue
            try:
                prefix = _prefix_of(m)
            except MirrorError as e:
                warnings.append(f"skipped {ref}: {e}")
                continue
        if prefix.split("/", 1)[0] == ref.registry:
            continue  # already on the mirror
        dest = _dest(prefix, ref)
        if dest in by_dest and by_dest[dest] != str(ref):
            warnings.append(
                f"{ref} and {by_dest[dest]} both map to {dest}: one mirror namespace serves several registries; "
                "give each registry its own mirror namespace (overridePath)"
            )
            continue
        by_dest[dest] = str(ref)
        mapping[str(ref)] = dest
    return Synced(mapping, tuple(warnings))


def _dest(prefix: str, ref: ImageRef) -> str:
    base = f"{prefix}/{ref.repository}"
    return f"{base}@{ref.digest}" if ref.digest else f"{base}:{ref.tag}"
