"""Parse `registries.yaml` text into a `Config`, reporting every problem at once with its place.

Pure: takes text, returns a model or raises `SpecError`. Reading the file is the caller's job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from nodecfg.spec import formats, safeyaml
from nodecfg.spec.models import Config
from nodecfg.spec.secrets import SECRET_FIELDS

MAX_INPUT_BYTES = 4 * 1024 * 1024
REDACTED = "<redacted>"
PathT = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where, what rule, which value."""

    location: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.line}: {self.location}: {self.message}" if self.line else f"{self.location}: {self.message}"


class SpecError(ValueError):
    """The input is invalid; `problems` lists every problem found."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        """All problems, one per line, prefixed with the source name."""
        head = f"{self.source}: {len(self.problems)} problem(s):"
        return "\n".join([head, *(f"  {self.source}:{p}" for p in self.problems)])


def _line_index(node: yaml.Node | None, path: PathT, out: dict[PathT, int]) -> None:
    """Map each path in the YAML tree to its 1-based line, for error locations."""
    if node is None:
        return
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k)
            out.setdefault((*path, key), k.start_mark.line + 1)
            _line_index(v, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_index(v, (*path, i), out)


def format_location(path: PathT) -> str:
    """`registries."docker.io".mirrors[0].url` from ('registries', 'docker.io', 'mirrors', 0, 'url')."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}" if out else part
        else:
            out += f".{json.dumps(part)}" if out else json.dumps(part)
    return out or "(top level)"


def _may_be_secret(path: PathT, unknown_field: bool) -> bool:
    """Whether a value at `path` could be a secret, judged by place, never by the value itself.

    A misspelled field (`Password:`) is unknown, so its value is hidden whatever its name; so is
    everything under `credentials` and every header value (a bearer token is an ordinary header).
    """
    return (
        unknown_field
        or (bool(path) and path[0] == "credentials")
        or "headers" in path
        or any(p in SECRET_FIELDS for p in path if isinstance(p, str))
    )


def _show_value(path: PathT, value: Any, unknown_field: bool = False) -> str:
    if isinstance(value, (dict, list)):
        return ""
    if _may_be_secret(path, unknown_field):
        return REDACTED
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _clean_path(loc: tuple[str | int, ...]) -> PathT:
    """The error location of pydantic without its markers for dict keys and validator wrappers."""
    out: list[str | int] = []
    for part in loc:
        if part == "[key]":  # a bad dict key: the key itself is the place
            continue
        if isinstance(part, str) and part.startswith(("function-after[", "function-before[")):
            continue
        out.append(part)
    return tuple(out)


def _rule(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def _from_validation_error(err: ValidationError, lines: dict[PathT, int]) -> list[Problem]:
    problems = []
    for e in err.errors(include_url=False):
        path = _clean_path(e["loc"])
        unknown_field = e["type"] == "extra_forbidden"
        msg = "unknown field (check its spelling and case)" if unknown_field else _rule(str(e["msg"]))
        value = _show_value(path, e.get("input"), unknown_field)
        if value and e["type"] != "missing" and not msg.startswith("password:"):
            msg = f"{msg}: {value}"
        problems.append(_problem_at(lines, path, msg))
    return problems


@dataclass(frozen=True)
class LoadedInput:
    """An input file in any accepted format, as nodecfg's model."""

    config: Config
    format: str
    warnings: tuple[str, ...]
    translated: dict[str, Any] | None  # nodecfg-format data of a foreign input (for `convert`)


def load_config(text: str | bytes, source: str = "registries.yaml") -> Config:
    """Parse and validate nodecfg-format text; raise SpecError listing every problem."""
    return load_input(text, source, "nodecfg").config


def _problem_at(lines: dict[PathT, int], path: PathT, message: str) -> Problem:
    line = None
    for n in range(len(path), -1, -1):
        if path[:n] in lines:
            line = lines[path[:n]]
            break
    return Problem(format_location(path), message, line)


def load_input(text: str | bytes, source: str = "registries.yaml", fmt: str = "auto") -> LoadedInput:
    """Parse any accepted format (`fmt` or detected), translate it, validate it; raise SpecError."""
    data, node = _parse(_decoded(text, source), source)
    return _validated(data, node, source, fmt)


def _decoded(text: str | bytes, source: str) -> str:
    if len(text) > MAX_INPUT_BYTES:
        raise SpecError(source, [Problem("(file)", f"larger than {MAX_INPUT_BYTES} bytes")])
    if isinstance(text, str):
        return text
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(source, [Problem("(file)", f"not UTF-8 text: byte {e.start}")]) from None


def _parse(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """Data and node tree (one parse: the nodes give lines, then values); JSON that YAML refuses."""
    try:
        return safeyaml.parse(text)
    except yaml.YAMLError as e:
        if text.lstrip().startswith(("{", "[")) and not isinstance(e, safeyaml.AliasError):
            try:  # JSON that YAML refuses (tabs for indentation): fine as JSON, without line numbers
                return json.loads(text), None
            except (ValueError, RecursionError):
                pass
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e)
        raise SpecError(source, [Problem("(yaml)", f"invalid YAML: {problem}", line)]) from None
    except RecursionError:
        raise SpecError(source, [Problem("(yaml)", "invalid YAML: nested too deeply")]) from None


def _validated(data: Any, node: yaml.Node | None, source: str, fmt: str) -> LoadedInput:
    if data is None:
        raise SpecError(source, [Problem("(file)", "is empty: expected at least `version: 1`")])
    lines: dict[PathT, int] = {}
    _line_index(node, (), lines)
    detected = formats.detect_format(data) if fmt == "auto" else fmt
    if detected is None:
        raise SpecError(
            source,
            [
                Problem(
                    "(top level)",
                    "not a format nodecfg reads: expected nodecfg's registries.yaml (`version: 1`), a k3s "
                    "registries.yaml (`mirrors:`/`configs:`), a .dockerconfigjson (`auths`), an image-sync "
                    "auth.json, or image-replacement rules (a list of repositoryPrefix/replaceWith); "
                    "pass --format to say which",
                )
            ],
        )
    if detected == "nodecfg":
        if not isinstance(data, dict):
            raise SpecError(source, [Problem("(top level)", f"must be a mapping, not {type(data).__name__}")])
        try:
            return LoadedInput(Config.model_validate(data), "nodecfg", (), None)
        except ValidationError as e:
            raise SpecError(source, _from_validation_error(e, lines)) from None
    if detected == "image-rules" and not isinstance(data, list):
        raise SpecError(source, [Problem("(top level)", "image-replacement rules are a list")])
    if detected != "image-rules" and not isinstance(data, dict):
        raise SpecError(source, [Problem("(top level)", f"a {detected} file is a mapping, not {type(data).__name__}")])
    t = formats.translate(detected, data, source)
    if t.problems:
        raise SpecError(source, [_problem_at(lines, path, msg) for path, msg in t.problems])
    try:
        config = Config.model_validate(t.data)
    except ValidationError as e:
        translated = [Problem(f"{p.location} (as translated from {detected})", p.message) for p in _from_validation_error(e, {})]
        raise SpecError(source, translated) from None
    return LoadedInput(config, detected, t.warnings, t.data)
