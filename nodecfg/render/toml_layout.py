"""How a TOML file indents its tables and keys, and the indentation a new table or key takes there.

tomlkit gives a new item the indentation of its parent's header: under Debian's config.toml (keys
two spaces in from their `[table]`, each sub-table two more) a new table lands at its parent's
column and its keys at the header's column, or at column 0. An edit should read as if the file's
author had made it, so a new item follows the file's own layout:

- a key inserted into a table: the indentation of that table's existing keys; in a table with none,
  its header's plus the offset its sibling tables' keys use (else the file's usual offset);
- a new table: its siblings' indentation (tables with the same parent); without siblings, the
  nearest ancestor header's plus the file's usual step from a table to a sub-table;
- a file with no indentation stays flat (every offset and step measured is empty).

Blank lines too: in a file whose tables mostly follow one another without one (Debian's), a new
table gets none; otherwise a blank line separates it, as tomlkit places it. Pure: it reads the
document and sets `trivia.indent` on the items an edit adds, nothing else; and it takes out the
blank lines an edit left behind when a removed table goes (`without_left_blank_lines`).
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections import Counter
from collections.abc import Iterable

from tomlkit.container import Container
from tomlkit.items import AoT, Item, Key, Table, Whitespace

Path = tuple[str, ...]
_HEADER = re.compile(r"^\s*\[\[?[^\[\]]+\]\]?\s*(#.*)?$")  # a [table] or [[array]] header line, not an array value


def _column(indent: str) -> str:
    """The horizontal part of a trivia indent (tomlkit keeps the blank lines before an item in it too)."""
    return indent.rpartition("\n")[2]


def _lead(indent: str) -> str:
    """The blank lines before an item: kept when its column changes."""
    head, newline, _column_part = indent.rpartition("\n")
    return head + newline


def _offset(outer: str, inner: str) -> str | None:
    """What `inner` adds to `outer`, if it extends it."""
    return inner[len(outer) :] if inner.startswith(outer) else None


def _usual(values: Iterable[str | None]) -> str | None:
    """The most common of the measured values (ties: the first seen); None when none was measured."""
    counts = Counter(v for v in values if v is not None)
    return counts.most_common(1)[0][0] if counts else None


def _key_path(path: Path, key: Key) -> Path:
    return (*path, *(k.key for k in key)) if key.is_dotted() else (*path, key.key)


class Indentation:
    """The indentation of a parsed document's tables and keys; `place_*` indent new items by it."""

    def __init__(self, doc: Container) -> None:
        self.headers: dict[Path, str] = {}  # tables written with a [header], in document order
        self.keys: dict[Path, str] = {}  # per table: the indentation of its last key
        self._walk(doc.body, ())
        lines = doc.as_string().splitlines()
        blank_before = [not lines[i - 1].strip() for i in range(1, len(lines)) if _HEADER.match(lines[i])]
        self.compact = sum(blank_before) * 2 < len(blank_before)  # most tables follow the line before them
        self.key_offset = _usual(_offset(self.headers[p], k) for p, k in self.keys.items() if p in self.headers) or ""
        steps = (_offset(self.headers[a], h) for p, h in self.headers.items() if (a := self._header_above(p)) is not None)
        self.step = _usual(steps) or ""

    def _walk(self, body: Iterable[tuple[Key | None, Item]], path: Path) -> None:
        for key, item in body:
            if key is None or isinstance(item, Whitespace | AoT):
                continue  # comments, blank lines; arrays of tables are no part of containerd's registry layout
            sub = _key_path(path, key)
            if isinstance(item, Table):
                if not item.is_super_table():
                    self.headers.setdefault(sub, _column(item.trivia.indent))
                self._walk(item.value.body, sub)
            else:
                self.keys[path] = _column(item.trivia.indent)

    def _header_above(self, path: Path) -> Path | None:
        for n in range(len(path) - 1, 0, -1):
            if path[:n] in self.headers:
                return path[:n]
        return None

    def table(self, path: Path) -> str:
        """The indentation for a new [table] at `path`."""
        siblings = [h for p, h in self.headers.items() if p[:-1] == path[:-1] and p != path]
        if siblings:
            return siblings[-1]
        above = self._header_above(path)
        return "" if above is None else self.headers[above] + self.step

    def key(self, table: Path) -> str:
        """The indentation for a new key in `table`."""
        if table in self.keys:
            return self.keys[table]
        if table not in self.headers:  # the top level, or a table written without a header
            return ""
        siblings = (_offset(self.headers[p], k) for p, k in self.keys.items() if p[:-1] == table[:-1] and p in self.headers)
        offset = _usual(siblings)
        return self.headers[table] + (self.key_offset if offset is None else offset)

    def place_table(self, path: Path, table: Table, *, header: bool = True) -> None:
        """Indent a table just added at `path` (its header too unless `header` is False), and what it holds."""
        if not header:
            pass
        elif table.is_super_table():  # no header line; tomlkit writes a blank line for an indent of "\n"
            if self.compact:
                table.trivia.indent = ""
        else:
            indent = self.table(path)
            table.trivia.indent = ("" if self.compact else _lead(table.trivia.indent)) + indent
            self.headers[path] = indent
        for key, child in table.value.body:
            if key is None or isinstance(child, Whitespace):
                continue
            if isinstance(child, Table):
                self.place_table(_key_path(path, key), child)
            else:
                self.place_key(path, child)

    def place_key(self, table: Path, item: Item) -> None:
        """Indent a key just added to `table` (not for keys inside an inline table)."""
        indent = self.key(table)
        item.trivia.indent = _lead(item.trivia.indent) + indent
        self.keys[table] = indent


def without_left_blank_lines(before: str, after: str, original: str) -> str:
    """`after` without the blank lines that border a removed part and are not in `original`.

    tomlkit separates a table it adds with a blank line at the end of the table above it; taking
    the table out again leaves that line behind. A blank line the user added elsewhere stays.
    """
    b, a, o = (t.splitlines(keepends=True) for t in (before, after, original))
    added: set[int] = set()
    for tag, _i1, _i2, j1, j2 in difflib.SequenceMatcher(None, o, a, autojunk=False).get_opcodes():
        if tag in ("insert", "replace"):
            added.update(range(j1, j2))
    drop: set[int] = set()
    for tag, _i1, _i2, j1, j2 in difflib.SequenceMatcher(None, b, a, autojunk=False).get_opcodes():
        if tag not in ("delete", "replace"):
            continue
        for start, step in ((j1 - 1, -1), (j2, 1)):  # the blank lines just above and just below the cut
            j = start
            while 0 <= j < len(a) and j in added and not a[j].strip():
                drop.add(j)
                j += step
    trimmed = "".join(line for j, line in enumerate(a) if j not in drop)
    # Blank lines never change what TOML means outside a multi-line string; check that none was one.
    return trimmed if tomllib.loads(trimmed) == tomllib.loads(after) else after
