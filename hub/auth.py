"""API tokens: scopes, hashing, and the ``tokens.json`` file that local clients read.

A token is ``ghk_`` + 43 URL-safe characters (256 random bits). The registry keeps
only its SHA-256 (``hub.registry.tokens``): with that much entropy a slow hash adds
nothing, and a stolen database yields no usable token. Servers compare hashes with
``hmac.compare_digest`` (``hub.server.auth``).

Scopes: ``generate`` (generation and every read-only registry RPC) and ``admin``
(mutating RPCs such as SetAlias; admin implies generate).

On its first start with no tokens, a server creates one token of each scope and
writes them to ``$GENHUB_HOME/tokens.json`` (mode 0600), exactly
``{"admin": "...", "generate": "..."}``; the CLI and ``hub.client.Client`` read it
when no token is given. No grpc import here: the CLI uses this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from hub.errors import InvalidArgument

GENERATE = "generate"
ADMIN = "admin"
SCOPES = (GENERATE, ADMIN)
# What holding a scope grants: admin implies generate.
GRANTS: dict[str, frozenset[str]] = {GENERATE: frozenset({GENERATE}), ADMIN: frozenset({GENERATE, ADMIN})}
TOKEN_PREFIX = "ghk_"
TOKENS_FILE = "tokens.json"
TOKEN_ENV = "GENHUB_TOKEN"  # a token for the CLI and the Python client, instead of tokens.json
MAX_TOKEN_CHARS = 256  # longer metadata is refused before hashing
MAX_NAME_CHARS = 100
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """Hex SHA-256 of a token: what the registry stores and servers compare."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise InvalidArgument("scope", f"{scope!r} is not a scope; use one of {', '.join(SCOPES)}")
    return scope


def check_token_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > MAX_NAME_CHARS:
        raise InvalidArgument(
            "name", f"{name!r} is not a token name; use up to {MAX_NAME_CHARS} letters, digits, '.', '_' or '-'"
        )
    return name


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w`` or ``45s`` as a timedelta."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise InvalidArgument("expires", f"{text!r} is not a duration; use a positive number and a unit, e.g. 30d, 12h, 90m")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def tokens_path(home: Path | str | None = None) -> Path:
    from hub.registry.paths import default_home

    return (Path(home) if home is not None else default_home()).expanduser() / TOKENS_FILE


def write_tokens_file(path: Path, tokens: dict[str, str]) -> None:
    """Write ``{"admin": ..., "generate": ...}`` readable by its owner only (created 0600, then renamed in place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({scope: tokens[scope] for scope in sorted(SCOPES)}, f)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, 0o600)  # whatever the umask
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def read_tokens_file(path: Path) -> dict[str, str]:
    """The tokens in ``path`` by scope ({} when the file does not exist)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InvalidArgument("tokens", f"cannot read {path} ({exc}); delete it and create tokens with `genhub token create`") from None
    if not isinstance(data, dict):
        raise InvalidArgument("tokens", f"{path} is not a JSON object of scope -> token")
    return {scope: value for scope, value in data.items() if scope in SCOPES and isinstance(value, str)}


def client_token(scope: str = GENERATE, home: Path | str | None = None) -> str | None:
    """The token a local client sends for calls needing ``scope``: from ``tokens.json`` in ``home`` when given,
    else ``$GENHUB_TOKEN``, else from ``tokens.json`` in the default home; None when there is none.

    From a tokens.json, the narrowest token that grants ``scope`` (generate for generation, admin for SetAlias).
    """
    if home is not None and (token := _narrowest(scope, read_tokens_file(tokens_path(home)))):
        return token
    return os.environ.get(TOKEN_ENV) or _narrowest(scope, read_tokens_file(tokens_path()))


def _narrowest(scope: str, tokens: dict[str, str]) -> str | None:
    for candidate in SCOPES:  # narrowest first: a generation call does not send the admin token over the wire
        if scope in GRANTS[candidate] and candidate in tokens:
            return tokens[candidate]
    return None


def bearer_metadata(token: str | None) -> list[tuple[str, str]]:
    """Invocation metadata carrying ``token`` ([] for None)."""
    return [("authorization", f"Bearer {token}")] if token else []


def create_initial_tokens(registry: Any, home: Path | str | None) -> Path | None:
    """On a registry with no tokens, create an admin and a generate token and write them to
    ``<home>/tokens.json``; returns that path, or None when the registry already had tokens."""
    path = tokens_path(home)
    return path if registry.tokens.create_initial(lambda tokens: write_tokens_file(path, tokens)) else None
