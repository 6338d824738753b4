"""Errors raised while rendering: each names where in the input (or node file) and why."""

from __future__ import annotations


class ConfigError(ValueError):
    """Rendering cannot go on; `problems` lists every problem found, as `<where>: <rule>`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))
