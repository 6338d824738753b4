"""The on-call commands: explain (where an image is pulled from), images (images.json), doctor."""

from __future__ import annotations

import argparse
import json
import os
from typing import TextIO

from nodecfg.cli.common import EXIT_DIFFERS, EXIT_ERROR, EXIT_OK, paths_from
from nodecfg.containerd import names
from nodecfg.node.fs import atomic_write
from nodecfg.node.status import daemon_mirrors


def cmd_explain(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Replay containerd's choice of hosts directory and endpoints for one image on this node."""
    from nodecfg.containerd.imageref import ReferenceError_, parse_reference  # noqa: PLC0415
    from nodecfg.node.containerd import detect_target  # noqa: PLC0415
    from nodecfg.node.view import read_node_view  # noqa: PLC0415
    from nodecfg.oncall.explain import explain  # noqa: PLC0415

    try:
        ref = parse_reference(args.image)
    except ReferenceError_ as e:
        print(f"error: {e}", file=err)
        return EXIT_ERROR
    paths = paths_from(args)
    view = read_node_view(paths, detect_target(paths, args.containerd_version))
    result = explain(args.image, ref, view)
    notes = [
        n for m in daemon_mirrors(paths.real(paths.state_dir)) if m.registry in (ref.registry, names.WILDCARD) and (n := m.note())
    ]
    if args.output == "json":
        json.dump({**result.to_json(), "notes": notes}, out, indent=2)
        out.write("\n")
    else:
        for line in result.lines():
            print(line, file=out)
        for n in notes:
            print(f"note:       {n}", file=out)
    return EXIT_OK


def cmd_images(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """images.json for an image-sync tool: every image on the node -> where its mirror must hold it."""
    from nodecfg.node.cri import CRIClient, CRIError  # noqa: PLC0415
    from nodecfg.node.inputs import read_input  # noqa: PLC0415
    from nodecfg.oncall.images import MirrorError, image_mapping, tagged_or_digest  # noqa: PLC0415
    from nodecfg.spec.loader import load_input  # noqa: PLC0415

    paths = paths_from(args)
    config = None
    if args.mirror is None:
        config = load_input(read_input(args.config), args.config, args.input_format).config
    socket_real = paths.real(paths.containerd_socket)
    if not os.path.exists(socket_real):
        print(f"error: containerd is not running here: no socket {socket_real} (see --containerd-socket)", file=err)
        return EXIT_ERROR
    try:
        with CRIClient(socket_real, timeout=30) as c:
            images = c.list_images()
    except CRIError as e:
        print(f"error: cannot list the node's images: {e}", file=err)
        return EXIT_ERROR
    refs = [r for img in images for r in tagged_or_digest(list(img.repo_tags), list(img.repo_digests))]
    try:
        synced = image_mapping(refs, mirror=args.mirror, config=config, registries=args.registry)
    except MirrorError as e:
        print(f"error: --mirror: {e}", file=err)
        return EXIT_ERROR
    for w in synced.warnings:
        print(f"warning: {w}", file=err)
    text = json.dumps(synced.mapping, indent=2) + "\n"
    if args.out:
        atomic_write(os.path.abspath(args.out), text.encode(), 0o644)
        print(f"{args.out}: {len(synced.mapping)} image(s) of {len(images)} on the node", file=err)
    else:
        out.write(text)
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """The checklist; exit 1 when any check fails."""
    from nodecfg.node.containerd import detect_target  # noqa: PLC0415
    from nodecfg.node.doctor import doctor  # noqa: PLC0415
    from nodecfg.node.view import read_node_view  # noqa: PLC0415
    from nodecfg.oncall.diagnose import Status  # noqa: PLC0415

    if not 0 < args.probe_timeout <= 60:
        print(f"error: --probe-timeout must be between 0 and 60 seconds, not {args.probe_timeout}", file=err)
        return EXIT_ERROR
    paths = paths_from(args)
    view = read_node_view(paths, detect_target(paths, args.containerd_version))
    socket_real = None if args.no_cri else paths.real(paths.containerd_socket)
    checks = doctor(paths, view, socket_real=socket_real, network=not args.no_network, timeout=args.probe_timeout)
    counts = {s: sum(c.status is s for c in checks) for s in Status}
    failed = counts[Status.FAIL] > 0
    if args.output == "json":
        summary = {s.value: n for s, n in counts.items()}
        json.dump({"ok": not failed, "summary": summary, "checks": [c.to_json() for c in checks]}, out, indent=2)
        out.write("\n")
    else:
        labels = {Status.OK: "[ ok ]", Status.WARN: "[warn]", Status.FAIL: "[FAIL]", Status.SKIP: "[skip]"}
        for c in checks:
            print(f"{labels[c.status]} {c.title}", file=out)
            if c.status in (Status.WARN, Status.FAIL):
                if c.detail:
                    print(f"       why: {c.detail}", file=out)
                if c.fix:
                    print(f"       fix: {c.fix}", file=out)
        print(
            f"{counts[Status.OK]} ok, {counts[Status.WARN]} warning(s), {counts[Status.FAIL]} failure(s), "
            f"{counts[Status.SKIP]} skipped",
            file=out,
        )
    return EXIT_DIFFERS if failed else EXIT_OK
