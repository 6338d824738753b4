"""Credential files as bytes: one trailing newline dropped, a byte order mark refused."""

from __future__ import annotations

import pytest

from nodecfg.render.credentials import resolve_credentials
from nodecfg.render.materials import Materials
from nodecfg.spec.loader import load_config

EXPLICIT = "version: 1\ncredentials:\n  - {registry: r.example, usernameFile: user, passwordFile: pw}\n"
BOM = "\ufeff".encode()


def resolve(files: dict[str, bytes], text: str = EXPLICIT):
    return resolve_credentials(load_config(text), Materials(files=files))


@pytest.mark.parametrize(
    ("content", "password"),
    [
        (b"pw", "pw"),
        (b"pw\n", "pw"),
        (b"pw\r\n", "pw"),
        (b"pw\n\n", "pw\n"),
        (b" pw ", " pw "),
        ("p\ufeffw".encode(), "p\ufeffw"),
    ],
)
def test_one_trailing_newline_is_dropped(content, password):
    auths, problems, _ = resolve({"user": b"u\n", "pw": content})
    assert problems == []
    assert auths["r.example"].auth.password is not None
    assert auths["r.example"].auth.password.reveal() == password


def test_byte_order_mark_is_refused_naming_the_file():
    _, problems, _ = resolve({"user": BOM + b"u\n", "pw": BOM + b"S3cret\n"})
    assert problems == [
        "credentials[0].usernameFile: 'user' starts with a UTF-8 byte order mark (EF BB BF): save it without one",
        "credentials[0].passwordFile: 'pw' starts with a UTF-8 byte order mark (EF BB BF): save it without one",
    ]


def test_byte_order_mark_in_a_docker_config_is_refused():
    text = "version: 1\ncredentials:\n  - dockerConfigJSON: d.json\n"
    _, problems, _ = resolve({"d.json": BOM + b'{"auths": {"r.example": {"auth": "dTpw"}}}'}, text)
    assert problems == [
        "credentials[0].dockerConfigJSON: 'd.json' starts with a UTF-8 byte order mark (EF BB BF): save it without one"
    ]
