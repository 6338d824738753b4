"""Redaction (pure): which names and values are secret, and diffs that hide them whatever the TOML spelling.

tests/test_secret_markers.py feeds secrets through every command; these cases pin the exact text.
"""

from __future__ import annotations

import tomllib

import pytest

from nodecfg.plan import Action, ChangeClass, Operation, file_diff
from nodecfg.plan.redaction import redact, redact_toml, redact_values
from nodecfg.render.files import FileKind
from nodecfg.spec.secrets import is_secret_field, is_secret_header, secret_values

CFG = 'plugins."io.containerd.grpc.v1.cri".registry.configs'


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("Authorization", True),
        ("proxy-authorization", True),
        ("Cookie", True),
        ("X-Api-Key", True),
        ("X-Auth-Token", True),
        ("X-Registry-Token", True),
        ("X-Vault-Secret", True),
        ("X-Password", True),
        ("X-Team", False),
        ("User-Agent", False),
        ("Accept", False),
    ],
)
def test_secret_header_names(name: str, secret: bool) -> None:
    assert is_secret_header(name) is secret


def test_secret_field_names() -> None:
    assert all(is_secret_field(n) for n in ("password", "Password", "auth", "identitytoken", "identity_token", "registrytoken"))
    assert not any(is_secret_field(n) for n in ("username", "config_path", "key_model", "ca", "server"))


def test_secret_values_by_place_and_by_name() -> None:
    tree = tomllib.loads(
        f"""
        [{CFG}."a".auth]
        username = "alice"
        password = "p1"
        pasword = "p2"
        [{CFG}."a".tls]
        ca_file = "/etc/ca.pem"
        [{CFG}."token.example".tls]
        cert_file = "/etc/token.pem"
        [plugins."io.containerd.grpc.v1.cri".registry.auths."https://b"]
        auth = "p3"
        [plugins."io.containerd.grpc.v1.cri".registry.headers]
        Authorization = ["Bearer p4"]
        X-Team = ["payments"]
        [plugins."other"]
        token = "p5"
        [host."https://m".header]
        Cookie = "p6"
        """
    )
    assert secret_values(tree) == {"p1", "p2", "p3", "Bearer p4", "p5", "p6"}


# One secret per spelling of containerd's auth entry; each line is what the diff must show.
SPELLINGS = [
    (f'[{CFG}."h".auth]\npassword = "S3cret-basic"\n', f'[{CFG}."h".auth]\npassword = "<redacted>"\n'),
    (f"[{CFG}.\"h\".auth]\npassword = 'S3cret-literal'\n", f'[{CFG}."h".auth]\npassword = "<redacted>"\n'),
    (
        f'[{CFG}."h".auth]\npassword = """S3cret\nline-two"""\nusername = "u"\n',
        f'[{CFG}."h".auth]\npassword = "<redacted>"\nusername = "u"\n',
    ),
    (f"[{CFG}.\"h\".auth]\npassword = '''\nS3cret\nline-two'''\n", f'[{CFG}."h".auth]\npassword = "<redacted>"\n'),
    (f'[{CFG}."h".auth]\npassword = "S3cret\\u0021"\n', f'[{CFG}."h".auth]\npassword = "<redacted>"\n'),
    (f'[{CFG}."h"]\nauth.password = "S3cret-dotted"\n', f'[{CFG}."h"]\nauth.password = "<redacted>"\n'),
    (
        '[plugins."io.containerd.grpc.v1.cri".registry]\nconfigs."h".auth.identitytoken = "S3cret-token"\n',
        '[plugins."io.containerd.grpc.v1.cri".registry]\nconfigs."h".auth.identitytoken = "<redacted>"\n',
    ),
    (
        f'[{CFG}."h"]\nauth = {{ username = "u", password = "S3cret-inline" }}\n',
        f'[{CFG}."h"]\nauth = {{ username = "u", password = "<redacted>" }}\n',
    ),
    (f'[{CFG}."h".auth]\nregistrytoken = "S3cret-rt"\n', f'[{CFG}."h".auth]\nregistrytoken = "<redacted>"\n'),
]


@pytest.mark.parametrize(("text", "shown"), SPELLINGS)
def test_every_spelling_of_a_credential_is_hidden(text: str, shown: str) -> None:
    tomllib.loads(text)  # each case is valid TOML, as containerd would read it
    assert redact_toml([text]) == [shown]


def test_a_secret_is_hidden_in_comments_and_on_every_line_of_it() -> None:
    text = f'# old password: S3cret-one\n[{CFG}."h".auth]\npassword = """S3cret-one\nS3cret-two"""\n# was S3cret-two\n'
    assert redact_toml([text]) == [f'# old password: <redacted>\n[{CFG}."h".auth]\npassword = "<redacted>"\n# was <redacted>\n']


def test_a_string_that_is_not_a_secret_is_kept_even_with_quotes_and_hashes_around() -> None:
    text = f'x = "a # not a comment"  # \'quoted\'\ny = \'S3cret-1\' # S3cret-1\n[{CFG}."h".auth]\npassword = "S3cret-1"\n'
    assert redact_toml([text]) == [
        f'x = "a # not a comment"  # \'quoted\'\ny = "<redacted>" # <redacted>\n[{CFG}."h".auth]\npassword = "<redacted>"\n'
    ]


def test_a_secret_found_on_one_side_is_hidden_on_the_other() -> None:
    before = f'[{CFG}."h".auth]\npassword = "S3cret-old"\n'
    after = '# moved: "S3cret-old"\n'
    assert redact_toml([before, after]) == [f'[{CFG}."h".auth]\npassword = "<redacted>"\n', '# moved: "<redacted>"\n']


def test_hosts_toml_headers_hidden_by_name_of_the_header() -> None:
    text = '[host."https://m"]\n  [host."https://m".header]\n  Authorization = ["Bearer abc.def"]\n  X-Registry-Token = \'t0ken-value\'\n  X-Team = ["payments"]\n'  # fmt: skip
    assert redact_toml([text]) == [
        '[host."https://m"]\n  [host."https://m".header]\n  Authorization = ["<redacted>"]\n  X-Registry-Token = "<redacted>"\n  X-Team = ["payments"]\n'
    ]


def test_text_that_does_not_parse_hides_the_value_of_every_secret_looking_key() -> None:
    broken = 'server = "https://r"\n[header\nAuthorization = ["Bearer x", "y"]\npassword = """abc\ndef"""\nauth.password = \'p\'\nX-Team = "t"\n'  # fmt: skip
    assert redact_toml([broken]) == [
        'server = "https://r"\n[header\nAuthorization = ["<redacted>"]\npassword = "<redacted>"\nauth.password = "<redacted>"\nX-Team = "t"\n'
    ]
    # An unterminated multi-line string hides everything after it: the rest may be the secret.
    assert redact_toml(['password = """abc\ndef\n']) == ['password = "<redacted>"']


def test_short_secrets_are_hidden_as_values_but_not_replaced_inside_other_words() -> None:
    text = f'[{CFG}."ab.example".auth]\npassword = "ab"\n'
    assert redact_toml([text]) == [f'[{CFG}."ab.example".auth]\npassword = "<redacted>"\n']
    assert redact_values("ab.example", ["ab"]) == "ab.example"


def test_messages_hide_known_secrets_and_values_after_secret_keys() -> None:
    assert redact("containerd: line 3: password = 'x1' rejected; got hunter22", ["hunter22"]) == (
        'containerd: line 3: password = "<redacted>" rejected; got <redacted>'
    )


def _op(kind: FileKind, content: bytes) -> Operation:
    return Operation(Action.WRITE, "/etc/containerd/config.toml", ChangeClass.COLD, kind, content, 0o600)


def test_diff_of_the_node_config_hides_its_own_secrets() -> None:
    before = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = ""\n  configs."h".auth.password = """S3cret-a\nS3cret-b"""\n'
    after = before.replace('config_path = ""', 'config_path = "/etc/containerd/certs.d"')
    diff = file_diff(_op(FileKind.CONTAINERD_CONFIG, after.encode()), before.encode(), ())
    assert "S3cret" not in diff
    assert diff.splitlines()[3:] == [
        " version = 2",
        ' [plugins."io.containerd.grpc.v1.cri".registry]',
        '-  config_path = ""',
        '+  config_path = "/etc/containerd/certs.d"',
        '   configs."h".auth.password = "<redacted>"',
    ]


def test_a_changed_secret_alone_is_said_not_shown() -> None:
    before = f'[{CFG}."h".auth]\npassword = "S3cret-old"\n'
    after = f'[{CFG}."h".auth]\npassword = "S3cret-new"\n'
    diff = file_diff(_op(FileKind.CONTAINERD_CONFIG, after.encode()), before.encode(), ())
    assert diff.endswith("(a secret value changes; not shown)\n")


def test_pem_files_are_not_taken_for_toml() -> None:
    # A base64 line such as `AbKeyQ==` would look like `name = value` to the key-based fallback.
    pem = "-----BEGIN CERTIFICATE-----\nAbKeyQ==\n-----END CERTIFICATE-----\n"
    diff = file_diff(_op(FileKind.CA, pem.encode()), None, ())
    assert "+AbKeyQ==" in diff
