"""YAML parsing for untrusted input: duplicate keys, alias bombs and alias cycles are refused.

Pure: takes text, returns the node tree and the data built from it, or raises `yaml.YAMLError`.
"""

from __future__ import annotations

from typing import Any

import yaml

# How many values aliases may add to a document when expanded. A "billion laughs" file of under
# 1 KB (nine anchors, each a list of nine aliases to the one before) expands to 10**9 values: PyYAML
# shares them as one object, but validating and indexing the data walks every copy, and memory
# grows to gigabytes. A normal file that reuses a mirror block in every registry adds a few dozen
# values per alias, so this bound is far above it and far below anything that costs memory.
MAX_ALIAS_VALUES = 100_000


class AliasError(yaml.composer.ComposerError):
    """Aliases that expand too far, or an alias inside the node it refers to."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and counts what aliases expand to while composing.

    Each composed node's expanded size (itself and everything below it, aliases counted in full) is
    known once it is composed, so an alias costs a dict lookup and a bomb is refused at the alias
    that crosses the bound, before anything is expanded.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}
        self._alias_values = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """Compose one node, keeping count of the values aliases add."""
        is_alias = self.check_event(yaml.AliasEvent)
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]  # (untyped in types-PyYAML)
        node = super().compose_node(parent, index)
        if node is None:
            return None
        if is_alias:
            self._count_alias(node, mark)
        else:
            self._sizes[id(node)] = 1 + sum(self._sizes[id(child)] for child in _children(node))
        return node

    def _count_alias(self, target: yaml.Node, mark: yaml.Mark) -> None:
        size = self._sizes.get(id(target))
        if size is None:  # the anchored node is still being composed: the alias is inside it
            raise AliasError(None, None, "an alias refers to a node that contains it (a cycle)", mark)
        self._alias_values += size
        if self._alias_values > MAX_ALIAS_VALUES:
            raise AliasError(
                None,
                None,
                f"aliases expand to more than {MAX_ALIAS_VALUES} values (nested anchors and aliases, "
                'a "billion laughs" document)',
                mark,
            )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping",
                node.start_mark,
                f"duplicate key {key!r} (first at line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse(text: str) -> tuple[Any, yaml.Node | None]:
    """The data of a one-document YAML text and its node tree (for line numbers); None when empty.

    Raises `yaml.YAMLError` (`AliasError` for aliases that expand too far) or RecursionError for
    nesting deeper than Python's recursion limit.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    finally:
        loader.dispose()
