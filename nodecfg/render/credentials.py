"""Turn `credentials:` plus the files and environment they name into config.toml auth entries."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

import yaml

from nodecfg.containerd import names
from nodecfg.render.materials import Materials, Secret, material
from nodecfg.spec import formats, loader, safeyaml
from nodecfg.spec.models import ENV_REF_RE, FILE_SOURCES, Config, Credential


@dataclass(frozen=True)
class Auth:
    """containerd's `configs."<host>".auth` fields (same meaning as in a docker config.json)."""

    username: str | None = None
    password: Secret | None = None
    identitytoken: Secret | None = None

    def secrets(self) -> list[str]:
        """Every secret string this entry carries, including its base64 `auth` form."""
        out = [s.reveal() for s in (self.password, self.identitytoken) if s is not None]
        if self.username is not None and self.password is not None:
            out.append(base64.b64encode(f"{self.username}:{self.password.reveal()}".encode()).decode())
        return out


@dataclass(frozen=True)
class ResolvedAuth:
    """An auth entry and where in the input it came from (for messages)."""

    auth: Auth
    origin: str


def _text_file(materials: Materials, path: str, where: str, problems: list[str]) -> str | None:
    data = material(materials, path, where, problems)
    if data is None:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"{where}: {path!r} is not UTF-8 text")
        return None
    if text.startswith("\ufeff"):
        # Refused, not stripped: the file's bytes are the secret, and containerd would send the
        # BOM as part of it; guessing which bytes the user meant is worse than saying so.
        problems.append(f"{where}: {path!r} starts with a UTF-8 byte order mark (EF BB BF): save it without one")
        return None
    # Secrets created with `kubectl create secret --from-file` or `echo` end in one newline that is
    # not part of the secret; docker login --password-stdin drops it the same way.
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


def _expand(value: str, materials: Materials, where: str, problems: list[str]) -> str | None:
    m = ENV_REF_RE.match(value)
    if m is None:
        return value
    name = m.group(1)
    if name not in materials.env:
        problems.append(f"{where}: environment variable {name} is not set")
        return None
    return materials.env[name]


def registry_from_docker_key(key: str) -> str:
    """`https://index.docker.io/v1/` -> `registry-1.docker.io`; `host:5000/path` -> `host:5000`."""
    k = key.strip()
    netloc = urlsplit(k).netloc if "://" in k else k.split("/", 1)[0]
    if netloc in names.DOCKER_HUB_ALIASES or netloc == names.DOCKER_HUB:
        return names.DOCKER_HUB_API_HOST
    return netloc


def _docker_config_entries(text: str, where: str, problems: list[str]) -> dict[str, Auth]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        problems.append(f"{where}: not valid JSON (line {e.lineno}, column {e.colno})")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a JSON object with an `auths` map")
        return {}
    # `.dockerconfigjson` nests entries under "auths"; the older `.dockercfg` does not.
    auths = data.get("auths", data if "auths" not in data and "credsStore" not in data else {})
    if not isinstance(auths, dict):
        problems.append(f"{where}: `auths` must be a JSON object")
        return {}
    out: dict[str, Auth] = {}
    for key, entry in auths.items():
        loc = f"{where}: auths[{key!r}]"
        host = registry_from_docker_key(key)
        try:
            names.check_host_port(host)
        except names.NameError_ as e:
            problems.append(f"{loc}: registry {host!r}: {e}")
            continue
        if not isinstance(entry, dict):
            problems.append(f"{loc}: must be a JSON object")
            continue
        user, password = entry.get("username"), entry.get("password")
        token = entry.get("identitytoken") or entry.get("identityToken")
        encoded = entry.get("auth")
        if not (isinstance(user, str) and user and isinstance(password, str)) and isinstance(encoded, str) and encoded:
            try:
                padded = encoded.strip() + "=" * (-len(encoded.strip()) % 4)
                decoded = base64.b64decode(padded, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                problems.append(f"{loc}: `auth` is not base64 of user:password")
                continue
            if ":" not in decoded:
                problems.append(f"{loc}: `auth` is not base64 of user:password")
                continue
            user, password = decoded.split(":", 1)
        if isinstance(token, str) and token:
            out[host] = Auth(username=user if isinstance(user, str) and user else None, identitytoken=Secret(token))
        elif isinstance(user, str) and user and isinstance(password, str):
            out[host] = Auth(username=user, password=Secret(password))
        else:
            problems.append(f"{loc}: has no username/password, auth or identitytoken")
    return out


def _explicit(c: Credential, where: str, materials: Materials, problems: list[str]) -> Auth | None:
    if c.usernameFile is not None:
        user = _text_file(materials, c.usernameFile, f"{where}.usernameFile", problems)
    else:
        assert c.username is not None
        user = _expand(c.username, materials, f"{where}.username", problems)
    if c.passwordFile is not None:
        password = _text_file(materials, c.passwordFile, f"{where}.passwordFile", problems)
    else:
        assert c.password is not None
        password = _expand(c.password, materials, f"{where}.password", problems)
    if user is None or password is None:
        return None
    if not user:
        problems.append(f"{where}: the user name is empty")
        return None
    if not password:
        problems.append(f"{where}: the password is empty")
        return None
    return Auth(username=user, password=Secret(password))


def _auth_json(text: str, where: str, materials: Materials, problems: list[str], warnings: list[str]) -> dict[str, Auth]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        problems.append(f"{where}: not valid JSON (line {e.lineno}, column {e.colno})")
        return {}
    entries, entry_problems = formats.auth_json_entries(data)
    chosen, chosen_warnings, more = formats.auth_json_by_host(entries)
    problems += [f"{where}: {loader.format_location(loc)}: {msg}" for loc, msg in entry_problems + more]
    warnings += [f"{where}: {w}" for w in chosen_warnings]
    out: dict[str, Auth] = {}
    for host, entry in chosen.items():
        loc = f"{where}: {entry.key!r}"
        user = _expand(entry.username, materials, f"{loc}.username", problems)
        password = _expand(entry.password, materials, f"{loc}.password", problems)
        if user is None or password is None:
            continue
        if not user or not password:
            problems.append(f"{loc}: username and password must not be empty")
            continue
        out[host] = Auth(username=user, password=Secret(password))
    return out


def _k3s_auth(text: str, where: str, problems: list[str]) -> dict[str, Auth]:
    try:
        data, _ = safeyaml.parse(text)
    except (yaml.YAMLError, RecursionError) as e:
        # Only nodecfg's own rule is shown: PyYAML's problem text may quote the secret file.
        mark = getattr(e, "problem_mark", None)
        rule = f": {e.problem}" if isinstance(e, safeyaml.AliasError) else ""
        problems.append(f"{where}: invalid YAML" + (f" at line {mark.line + 1}" if mark is not None else "") + rule)
        return {}
    entries: dict[str, dict[str, object]] = {}
    for host, auth in formats.k3s_auth_entries(data).items():
        unknown = sorted(set(auth) - {"username", "password", "auth", "identity_token"})
        if unknown:
            problems.append(
                f"{where}: configs.{host!r}.auth: unknown field(s) {', '.join(unknown)} "
                "(k3s has username, password, auth, identity_token)"
            )
            continue
        # The fields of a docker config entry, with identity_token spelled the k3s way.
        entries[host] = {k: v for k, v in auth.items() if k != "identity_token"}
        if auth.get("identity_token"):
            entries[host]["identitytoken"] = auth["identity_token"]
    return _docker_config_entries(json.dumps({"auths": entries}), f"{where}: configs", problems)


def _file_entries(
    c: Credential, where: str, materials: Materials, problems: list[str], warnings: list[str]
) -> dict[str, Auth] | None:
    """Auth entries from a credentials file (None: this entry names no file)."""
    for name in FILE_SOURCES:
        path = getattr(c, name)
        if path is None:
            continue
        loc = f"{where}.{name}"
        text = _text_file(materials, path, loc, problems)
        if text is None:
            return {}
        if name == "dockerConfigJSON":
            return _docker_config_entries(text, loc, problems)
        if name == "authJSON":
            return _auth_json(text, loc, materials, problems, warnings)
        return _k3s_auth(text, loc, problems)
    return None


def resolve_credentials(config: Config, materials: Materials) -> tuple[dict[str, ResolvedAuth], list[str], list[str]]:
    """Auth entries by contacted host, problems, warnings.

    Entries from `.dockerconfigjson` files come first; an explicit `registry:` entry for the same
    host replaces one from a file (with a warning); two explicit entries for one host are an error.
    """
    problems: list[str] = []
    warnings: list[str] = []
    out: dict[str, ResolvedAuth] = {}
    explicit: dict[str, str] = {}
    for i, c in enumerate(config.credentials):
        where = f"credentials[{i}]"
        file_entries = _file_entries(c, where, materials, problems, warnings)
        if file_entries is not None:
            for host, auth in file_entries.items():
                if host in explicit:
                    continue
                if host in out and out[host].auth != auth:
                    warnings.append(f"{where}: credentials for {host} replace those from {out[host].origin}")
                out[host] = ResolvedAuth(auth, where)
            continue
        host = c.auth_host()
        if host in explicit:
            problems.append(f"{where}.registry: credentials for {host} are already given by {explicit[host]}")
            continue
        given = _explicit(c, where, materials, problems)
        if given is None:
            continue
        if host in out:
            warnings.append(f"{where}: credentials for {host} replace those from {out[host].origin}")
        explicit[host] = where
        out[host] = ResolvedAuth(given, where)
    return out, problems, warnings
