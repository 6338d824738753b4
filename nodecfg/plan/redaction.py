"""Hide secrets in what nodecfg shows: config.toml and hosts.toml text in diffs, and messages (pure).

By value, not only by field name. A TOML text is parsed, its secret values are found
(`spec.secrets`), and every string literal whose value is a secret is replaced, whatever its
spelling: a table, a dotted key or an inline table; a basic, literal or multi-line string. Then
each known secret, and each line of a multi-line one, is replaced wherever else it appears (a
comment, a message). A text that does not parse has no values to find: there, the value after
each secret-looking key is hidden instead.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterable, Sequence
from typing import Any

from nodecfg.spec.secrets import is_secret_field, is_secret_header, secret_values

REDACTED = "<redacted>"
# Shorter strings are hidden only as whole TOML values: replacing "ab" everywhere would eat paths
# and host names (a two-letter secret in a comment stays visible; containerd's own fields are longer).
MIN_SECRET_LEN = 3
_HIDDEN = f'"{REDACTED}"'

# TOML string literals, in the order TOML tries them; a multi-line string may end in up to two
# quotes of its content ("""a""""" is `a""`). An unterminated one runs to the end of the text (or
# line): in a file that does not parse, hiding too much beats showing the rest of a secret.
_ML_BASIC = r'"""(?:\\.|[^\\])*?(?:"""(?!")|\Z)'
_ML_LITERAL = r"'''.*?(?:'''(?!')|\Z)"
_BASIC = r'"(?:\\.|[^"\\\n])*(?:"|$)'
_LITERAL = r"'[^'\n]*(?:'|$)"
_STRINGS = re.compile(rf"#[^\n]*|(?P<s>{_ML_BASIC}|{_ML_LITERAL}|{_BASIC}|{_LITERAL})", re.DOTALL | re.MULTILINE)
# `name = value` where the name is the last part of a (dotted, quoted) key.
_KEY_VALUE = re.compile(
    r"""(?P<key>(?:^|(?<=[\s,{.]))(?P<q>["']?)(?P<name>[A-Za-z0-9_-]+)(?P=q)[ \t]*=[ \t]*)"""
    rf"(?P<val>{_ML_BASIC}|{_ML_LITERAL}|{_BASIC}|{_LITERAL}|\{{[^}}\n]*\}}?|\[[^\]]*\]?|[^\s,}}\]]+)",
    re.DOTALL | re.MULTILINE,
)


def _literal_value(token: str) -> str | None:
    """The string a TOML string literal stands for (None: not a valid literal)."""
    if token[:3] not in ('"""', "'''") and (token[0] == "'" or "\\" not in token):
        return token[1:-1]
    try:
        value = tomllib.loads(f"v = {token}")["v"]
    except tomllib.TOMLDecodeError:
        return None
    return value if isinstance(value, str) else None


def _hide_literals(text: str, secrets: frozenset[str]) -> str:
    """Replace each string literal of `text` whose value is one of `secrets`."""
    if not secrets:
        return text

    def one(m: re.Match[str]) -> str:
        token = m.group("s")
        return _HIDDEN if token is not None and _literal_value(token) in secrets else m.group(0)

    return _STRINGS.sub(one, text)


def _hide_after_keys(text: str) -> str:
    """Without a parse: hide the value after every key named like a credential or a secret header."""

    def one(m: re.Match[str]) -> str:
        name = m.group("name")
        if not (is_secret_field(name) or is_secret_header(name)):
            return m.group(0)
        return m.group("key") + (f"[{_HIDDEN}]" if m.group("val").startswith("[") else _HIDDEN)

    return _KEY_VALUE.sub(one, text)


@functools.lru_cache(maxsize=64)
def _occurrences(secrets: frozenset[str]) -> re.Pattern[str] | None:
    """One pattern for every secret and every line of a multi-line one, longest first."""
    pieces = {s for s in secrets if len(s) >= MIN_SECRET_LEN}
    pieces |= {line for s in secrets for line in s.splitlines() if len(line.strip()) >= MIN_SECRET_LEN}
    if not pieces:
        return None
    return re.compile("|".join(re.escape(p) for p in sorted(pieces, key=len, reverse=True)))


def redact_values(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret (and of each line of a multi-line one) hidden."""
    pattern = _occurrences(frozenset(secrets))
    return text if pattern is None else pattern.sub(REDACTED, text)


def _parsed(text: str) -> dict[str, Any] | None:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None


def redact_toml(texts: Sequence[str], secrets: Iterable[str] = ()) -> list[str]:
    """TOML texts (config.toml, hosts.toml) with `secrets` and every secret value they hold hidden.

    Texts that belong together (a file before and after a change) are given together: a secret
    found in one is hidden in all, whatever its spelling there.
    """
    trees = [_parsed(t) for t in texts]
    hidden = frozenset(secrets).union(*(secret_values(tree) for tree in trees if tree is not None))
    return [
        redact_values(_hide_literals(t, hidden) if tree is not None else _hide_after_keys(t), hidden)
        for t, tree in zip(texts, trees, strict=True)
    ]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """A message with every known secret hidden, and the value after any credential-like key."""
    return redact_values(_hide_after_keys(text), secrets)
