"""Operations on config.toml (set a value, delete a key at a path), applied twice (pure).

Once to a tomlkit document, which keeps comments and layout, and once to the plain `tomllib`
parse of the original. The two results must mean the same, so a layout quirk of tomlkit can
never produce a config that means something other than intended.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from typing import Any

import tomlkit
from tomlkit.items import InlineTable, Table

from nodecfg.containerd.config_toml import Path, get_path
from nodecfg.containerd.errors import ConfigError
from nodecfg.render.toml_layout import Indentation

DELETE = object()  # the value of an operation that deletes the key at its path
Operation = tuple[Path, Any]


def plain_apply(tree: dict[str, Any], path: Path, value: Any) -> None:
    """Apply one operation to a plain parsed tree (`value` DELETE: delete the key)."""
    cur = tree
    for p in path[:-1]:
        if p not in cur:
            if value is DELETE:
                return
            cur[p] = {}
        cur = cur[p]
    if value is DELETE:
        cur.pop(path[-1], None)
    else:
        cur[path[-1]] = copy.deepcopy(value)


def _tk_container(value: dict[str, Any], inline: bool, *, blank_after: bool) -> Any:
    t: Any = tomlkit.inline_table() if inline else tomlkit.table()
    for k, v in value.items():
        t[k] = v
    if not inline and blank_after:
        t.add(tomlkit.nl())  # a blank line before whatever table follows
    return t


def _tk_apply(doc: tomlkit.TOMLDocument, path: Path, value: Any, layout: Indentation, *, inline_below: int | None = None) -> None:
    """Apply one operation to the tomlkit document; what it adds is indented as the file is (`layout`).

    `inline_below`: containers created deeper than this many path elements are inline tables
    (the fallback for files that use dotted keys, where tomlkit misplaces new [tables]).
    """
    cur: Any = doc
    for i, p in enumerate(path[:-1]):
        if p not in cur:
            if value is DELETE:
                return
            inline = isinstance(cur, InlineTable) or (inline_below is not None and i >= inline_below)
            # Only the direct parent of a scalar needs a [header] of its own; every other table
            # created on the way is a super-table, so no empty headers appear.
            holds_scalar = i == len(path) - 2 and not isinstance(value, dict)
            new: Any = tomlkit.inline_table() if inline else tomlkit.table(is_super_table=not holds_scalar)
            cur[p] = new
            _place(layout, cur, path[: i + 1], new)
        cur = cur[p]
    key = path[-1]
    if value is DELETE:
        if key in cur:
            del cur[key]
        return
    existed = key in cur
    item: Any = (
        _tk_container(value, isinstance(cur, InlineTable) or inline_below is not None, blank_after=not layout.compact)
        if isinstance(value, dict)
        else tomlkit.item(value)
    )
    cur[key] = item
    if existed:  # tomlkit keeps the replaced item's place and indentation; only what is in it is new
        if isinstance(item, Table):
            layout.place_table(path, item, header=False)
    else:
        _place(layout, cur, path, item)


def _place(layout: Indentation, parent: Any, path: Path, item: Any) -> None:
    """Indent `item`, just added to `parent` at `path`, as the file indents such items."""
    if isinstance(parent, InlineTable):
        return  # inside `{...}`: on the line of its table
    if isinstance(item, Table):
        layout.place_table(path, item)
    else:
        layout.place_key(path[:-1], item)


def _pruned(tree: Any) -> Any:
    """The tree without empty tables: containerd reads an empty table and an absent one alike."""
    if isinstance(tree, Mapping):
        out = {k: _pruned(v) for k, v in tree.items()}
        return {k: v for k, v in out.items() if not (isinstance(v, dict) and not v)}
    return tree


def is_empty(tree: Any, path: Path) -> bool:
    """Whether the table at `path` exists and holds nothing."""
    v = get_path(tree, path)
    return isinstance(v, Mapping) and len(v) == 0


def apply_ops(
    text: str, plain: dict[str, Any], ops: list[tuple[Path, Any]], table: Path, where: str
) -> tuple[str, dict[str, Any]]:
    """Apply `ops` to the text (tomlkit) and to the parsed tree; the two must mean the same."""
    expected = copy.deepcopy(plain)
    effective: list[tuple[Path, Any]] = []
    for path, value in ops:
        before = get_path(expected, path)
        if (value is DELETE and before is None) or (value is not DELETE and before == value):
            continue
        effective.append((path, value))
        plain_apply(expected, path, value)
        # A host entry left with nothing in it is removed too: it would be an empty table.
        if value is DELETE and path[-1] in ("auth", "tls") and is_empty(expected, path[:-1]):
            effective.append((path[:-1], DELETE))
            plain_apply(expected, path[:-1], DELETE)
    if not effective:
        out = text
    else:
        # First as [tables]; if that does not mean exactly what was intended (a file written with
        # dotted keys), again with new values as inline tables below the registry table.
        for inline_below in (None, len(table) - 1):
            doc = tomlkit.parse(text)
            layout = Indentation(doc)
            for path, value in effective:
                _tk_apply(doc, path, value, layout, inline_below=inline_below)
            out = doc.as_string()
            if not out.endswith("\n"):
                out += "\n"
            try:
                if _pruned(tomllib.loads(out)) == _pruned(expected):
                    break
            except tomllib.TOMLDecodeError:
                pass
        else:
            raise ConfigError(
                [
                    f"{where}: nodecfg could not edit this file without changing other settings (a "
                    "layout it does not handle); nothing was written. Please report the file's layout."
                ]
            )
    return out, expected
