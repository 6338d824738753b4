"""Image references, normalised the way kubelet and containerd's CRI plugin normalise them.

`nginx` -> `docker.io/library/nginx:latest`; a reference with both a tag and a digest keeps only
the digest (containerd's `ParseDockerRef`). The first path component is the registry only if it
holds a `.` or `:`, is `localhost`, or has upper-case letters (distribution/reference
`splitDockerDomain`); otherwise the image is on Docker Hub.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nodecfg.containerd import names

DEFAULT_TAG = "latest"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
MAX_NAME = 255


class ReferenceError_(ValueError):
    """An image reference containerd would refuse (the message names the rule)."""


@dataclass(frozen=True)
class ImageRef:
    """A normalised image reference."""

    registry: str  # the namespace: host[:port] exactly as containerd looks it up
    repository: str  # the path below the registry, e.g. library/nginx
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """registry/repository, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def object(self) -> str:
        """What is asked for under /manifests/: the digest if there is one, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag}"


def parse_reference(text: str) -> ImageRef:
    """Normalise `text` as CRI does; raise ReferenceError_ naming what is wrong."""
    ref = text.strip()
    if not ref:
        raise ReferenceError_("the image reference is empty")
    if any(c.isspace() for c in ref):
        raise ReferenceError_(f"{text!r}: an image reference has no spaces")
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise ReferenceError_(f"{text!r}: {digest!r} is not a digest (algorithm:hex)")
    tag = None
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        ref, tag = ref[:colon], ref[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise ReferenceError_(f"{text!r}: {tag!r} is not a valid tag")
    first, sep, rest = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        registry, path = first, rest
    else:
        registry, path = names.DOCKER_HUB, ref
    if registry == "index.docker.io":
        registry = names.DOCKER_HUB
    try:
        names.check_host_port(registry)
    except names.NameError_ as e:
        raise ReferenceError_(f"{text!r}: registry {registry!r}: {e}") from None
    if registry == names.DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not _PATH_RE.match(path):
        raise ReferenceError_(
            f"{text!r}: repository {path!r} must be lower-case letters, digits and separators (. _ __ -) between '/'"
        )
    if len(registry) + 1 + len(path) > MAX_NAME:
        raise ReferenceError_(f"{text!r}: the name is longer than {MAX_NAME} characters")
    if digest is not None:
        tag = None  # containerd keeps only the digest of `name:tag@digest`
    elif tag is None:
        tag = DEFAULT_TAG
    return ImageRef(registry, path, tag, digest)
