"""Generate docs/config-reference.md from the models' field descriptions (one source of truth).

Run `python -m nodecfg.spec.reference > docs/config-reference.md`; a test fails when it is stale.
"""

from __future__ import annotations

import sys
import types
import typing

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from nodecfg.containerd.durations import Duration
from nodecfg.spec.models import Config, Credential, HostAlias, Mirror, Registry, Restart

SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("Top level", Config),
    ("`registries.<name>`", Registry),
    ("`registries.<name>.mirrors[]`", Mirror),
    ("`credentials[]`", Credential),
    ("`hostAliases[]`", HostAlias),
    ("`restart`", Restart),
]


def _type(annotation: object) -> str:
    """A readable type: `list of string`, `map of string to Registry`, `"auto" or "never"`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is typing.Literal:
        return " or ".join(repr(a).replace("'", '"') for a in args)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type(a) for a in args if a is not type(None))
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is dict:
        return f"map of {_type(args[0])} to {_type(args[1])}"
    names = {str: "string", bool: "boolean", int: "integer", Duration: "duration (Go syntax: `500ms`, `1h30m`)"}
    if isinstance(annotation, type):
        return names.get(annotation, annotation.__name__)
    return str(annotation)


def _default(field: object) -> str:
    default = getattr(field, "default", PydanticUndefined)
    factory = getattr(field, "default_factory", None)
    if factory is not None:
        return f"`{factory()!r}`" if not isinstance(factory(), BaseModel) else "(see section)"
    if default is PydanticUndefined:
        return "required"
    if isinstance(default, Duration):
        return f"`{default.text!r}`"
    return f"`{default!r}`"


def generate() -> str:
    """The whole reference document."""
    lines = [
        "# registries.yaml reference",
        "",
        "Generated from `nodecfg/spec/models.py` by `python -m nodecfg.spec.reference`; do not edit.",
        "",
        "Unknown fields are errors. Every problem in a file is reported at once, as",
        "`<file>:<line>: <field path>: <rule>: <value>` (secret values are never shown).",
        "",
    ]
    for title, model in SECTIONS:
        lines += [
            f"## {title}",
            "",
            (model.__doc__ or "").strip(),
            "",
            "| field | type | default | description |",
            "| --- | --- | --- | --- |",
        ]
        for name, field in model.model_fields.items():
            desc = (field.description or "").replace("|", "\\|")
            lines.append(f"| `{name}` | {_type(field.annotation)} | {_default(field)} | {desc} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(generate())
