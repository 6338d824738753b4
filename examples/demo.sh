#!/usr/bin/env bash
# Quick start: run nodecfg on a copy of a node as Debian's containerd package leaves it
# (examples/node), with the built-in example input (examples/registries.yaml). Touches only a temp dir.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
node="$(mktemp -d)"
trap 'rm -rf "$node"' EXIT
cp -r "$here/node/." "$node/"
args=(--root "$node" --config "$here/registries.yaml" --containerd-version 1.6.20)
echo "### nodecfg diff (a dry run: exit 1 means the node differs)"
nodecfg diff "${args[@]}" || [ $? -eq 1 ]
echo; echo "### nodecfg apply"
nodecfg apply "${args[@]}" 2>/dev/null
echo; echo "### nodecfg diff again (in sync: exit 0)"
nodecfg diff "${args[@]}"
echo; echo "### files on the node now"
(cd "$node" && find etc var -type f | sort)
