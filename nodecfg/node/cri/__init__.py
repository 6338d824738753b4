"""A small client for the CRI API that kubelet uses: pull, inspect and remove images; runtime health.

Only a CRI pull reads containerd's `config_path` and `configs."host".auth`, so this is how nodecfg
(and its tests) find out what a kubelet on this node would see. The messages come from
`api.proto` (package runtime.v1, the CRI wire format); calls go straight to the method paths,
so no generated service stubs are needed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from nodecfg.node.cri import api_pb2 as api
from nodecfg.node.defaults import DEFAULT_SOCKET

CALL_TIMEOUT_S = 3.0  # one health call while waiting for a restart: short, so a stop is seen soon
RUNTIME = "/runtime.v1.RuntimeService/"
IMAGES = "/runtime.v1.ImageService/"

R = TypeVar("R", bound=Message)


class CRIError(Exception):
    """A CRI call failed: `code` is the gRPC status name (UNAVAILABLE, NOT_FOUND, UNKNOWN, ...)."""

    def __init__(self, method: str, code: str, details: str) -> None:
        super().__init__(f"CRI {method}: {code}: {details}")
        self.method = method
        self.code = code
        self.details = details


@dataclass(frozen=True)
class Health:
    """What the runtime says about itself: ready only when its CRI service answers and is ready."""

    ready: bool
    problems: tuple[str, ...]
    runtime: str = ""
    config_path: str | None = None

    def describe(self) -> str:
        """One line for logs and status output."""
        return f"{self.runtime}: ready" if self.ready else "not ready: " + "; ".join(self.problems)


class CRIClient:
    """One gRPC channel to a CRI socket; use as a context manager or call `close()`."""

    def __init__(self, socket: str = DEFAULT_SOCKET, *, timeout: float = 10.0) -> None:
        self.socket = socket
        self.timeout = timeout
        # A unix socket never goes through a proxy, whatever the environment says.
        self._channel = grpc.insecure_channel(f"unix://{socket}", options=[("grpc.enable_http_proxy", 0)])

    def __enter__(self) -> CRIClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def _call(self, path: str, request: Message, response: type[R], timeout: float | None) -> R:
        method = self._channel.unary_unary(
            path,
            request_serializer=_serialize,
            response_deserializer=response.FromString,
        )
        call: Callable[..., Any] = method
        try:
            result: R = call(request, timeout=timeout if timeout is not None else self.timeout)
        except grpc.RpcError as e:
            code = e.code().name if isinstance(e, grpc.Call) else "UNKNOWN"
            details = (e.details() if isinstance(e, grpc.Call) else str(e)) or ""
            raise CRIError(path.rsplit("/", 1)[-1], code, details) from None
        return result

    def version(self, timeout: float | None = None) -> api.VersionResponse:
        """RuntimeService/Version: the runtime's name and version."""
        return self._call(RUNTIME + "Version", api.VersionRequest(version="v1"), api.VersionResponse, timeout)

    def status(self, *, verbose: bool = False, timeout: float | None = None) -> api.StatusResponse:
        """RuntimeService/Status: runtime conditions; with `verbose`, containerd adds its CRI config."""
        return self._call(RUNTIME + "Status", api.StatusRequest(verbose=verbose), api.StatusResponse, timeout)

    def pull(self, image: str, *, auth: api.AuthConfig | None = None, timeout: float | None = None) -> str:
        """ImageService/PullImage: returns the image reference containerd stored (the image id)."""
        request = api.PullImageRequest(image=api.ImageSpec(image=image), auth=auth)
        return self._call(IMAGES + "PullImage", request, api.PullImageResponse, timeout).image_ref

    def image_status(self, image: str, timeout: float | None = None) -> api.Image | None:
        """ImageService/ImageStatus: the image, or None when the runtime does not have it."""
        response = self._call(
            IMAGES + "ImageStatus", api.ImageStatusRequest(image=api.ImageSpec(image=image)), api.ImageStatusResponse, timeout
        )
        return response.image if response.HasField("image") else None

    def remove(self, image: str, timeout: float | None = None) -> None:
        """ImageService/RemoveImage: removing an image that is not there is not an error."""
        self._call(
            IMAGES + "RemoveImage", api.RemoveImageRequest(image=api.ImageSpec(image=image)), api.RemoveImageResponse, timeout
        )

    def list_images(self, timeout: float | None = None) -> list[api.Image]:
        """ImageService/ListImages: every image the runtime has."""
        return list(self._call(IMAGES + "ListImages", api.ListImagesRequest(), api.ListImagesResponse, timeout).images)

    def health(self, timeout: float | None = None) -> Health:
        """Ready when Version and Status answer and the RuntimeReady condition is true.

        containerd keeps running when its CRI plugin fails to load (for example `mirrors` next to
        `config_path`); then these calls fail with UNIMPLEMENTED, which is exactly what kubelet
        would see. The registry `config_path` containerd actually loaded is read from the verbose
        status, so a caller can check that its edit took effect.
        """
        try:
            v = self.version(timeout)
            st = self.status(verbose=True, timeout=timeout)
        except CRIError as e:
            return Health(False, (str(e),))
        problems = tuple(
            f"{c.type} is false: {c.reason or 'no reason'}{': ' + c.message if c.message else ''}"
            for c in st.status.conditions
            if c.type == "RuntimeReady" and not c.status
        )
        if not any(c.type == "RuntimeReady" for c in st.status.conditions):
            problems += ("the runtime reports no RuntimeReady condition",)
        return Health(
            not problems, problems, f"{v.runtime_name} {v.runtime_version}", registry_config_path(st.info.get("config"))
        )


def wait_healthy(
    socket: str,
    timeout: float,
    good: Callable[[Health], bool],
    poll: float = 0.2,
    stop: Callable[[], bool] | None = None,
) -> Health:
    """Poll the runtime's health until `good(health)`, `timeout` seconds, or `stop()`.

    Returns the last answer. Each call is bounded too (CALL_TIMEOUT_S), so `stop` is seen soon.
    """
    deadline = time.monotonic() + timeout
    h = Health(False, ("not checked yet",))
    with CRIClient(socket, timeout=CALL_TIMEOUT_S) as c:
        while True:
            left = deadline - time.monotonic()
            h = c.health(timeout=max(0.1, min(CALL_TIMEOUT_S, left)))
            if good(h) or time.monotonic() >= deadline or (stop is not None and stop()):
                return h
            time.sleep(poll)


def registry_config_path(config_json: str | None) -> str | None:
    """`registry.configPath` from containerd's verbose CRI status (`info["config"]`), if present."""
    if not config_json:
        return None
    try:
        config = json.loads(config_json)
    except ValueError:
        return None
    registry = config.get("registry") if isinstance(config, dict) else None
    value = registry.get("configPath") if isinstance(registry, dict) else None
    return value if isinstance(value, str) else None


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()
