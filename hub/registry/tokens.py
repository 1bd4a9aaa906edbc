"""API tokens in the registry: only hashes are stored (``hub.auth`` explains the format).

    store = registry.tokens
    record, token = store.create("admin", name="ci", expires=timedelta(days=30))   # token: shown once
    store.revoke("ci")
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, ContextManager

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub import auth
from hub.errors import AlreadyExists, NotFound
from hub.registry import convert
from hub.registry.orm import ApiToken, utcnow

INITIAL_NAMES = {auth.ADMIN: "initial-admin", auth.GENERATE: "initial-generate"}


@dataclass(frozen=True)
class TokenRecord:
    name: str
    scope: str
    created_at: datetime
    expires_at: datetime | None  # UTC; None: never

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or convert.utc(utcnow()))


@dataclass(frozen=True)
class ActiveToken:
    """What a server checks a presented token against."""

    name: str
    scope: str
    token_hash: str
    expires_at: datetime | None  # naive UTC, as stored


class TokenStore:
    """Create, list, revoke and look up API tokens; each call is one transaction."""

    def __init__(self, session: Callable[..., ContextManager[Session]]) -> None:
        self._session = session

    def create(self, scope: str, name: str | None = None, expires: timedelta | None = None) -> tuple[TokenRecord, str]:
        """A new token of ``scope`` (the token itself is returned here only)."""
        auth.check_scope(scope)
        token = auth.new_token()
        name = auth.check_token_name(name) if name is not None else f"{scope}-{auth.token_hash(token)[:8]}"
        row = ApiToken(name=name, scope=scope, token_hash=auth.token_hash(token), created_at=utcnow(),
                       expires_at=utcnow() + expires if expires is not None else None)
        try:
            with self._session(write=True) as s:
                if s.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
                    raise AlreadyExists(f"a token named {name!r} exists; revoke it first or choose another --name")
                s.add(row)
        except IntegrityError:  # created concurrently by another process
            raise AlreadyExists(f"a token named {name!r} exists; revoke it first or choose another --name") from None
        return _record(row), token

    def list(self) -> list[TokenRecord]:
        with self._session() as s:
            return [_record(row) for row in s.scalars(select(ApiToken).order_by(ApiToken.name))]

    def revoke(self, name: str) -> None:
        with self._session(write=True) as s:
            row = s.scalar(select(ApiToken).where(ApiToken.name == name))
            if row is None:
                names = ", ".join(s.scalars(select(ApiToken.name).order_by(ApiToken.name))) or "none"
                raise NotFound(f"no token named {name!r}; tokens: {names} (see `genhub token list`)")
            s.delete(row)

    def active(self) -> list[ActiveToken]:
        """Tokens not yet expired, for a server's in-memory check table."""
        now = utcnow()
        with self._session() as s:
            rows = s.scalars(select(ApiToken).where((ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > now)))
            return [ActiveToken(r.name, r.scope, r.token_hash, r.expires_at) for r in rows]

    def create_initial(self, keep: Callable[[dict[str, str]], None]) -> bool:
        """On a registry with no tokens at all, create one token of each scope and hand them to ``keep``
        ({scope: token}) before committing; False when the registry has tokens already.

        One write transaction: if ``keep`` fails (tokens.json cannot be written) nothing is stored, and two
        servers starting at once create one pair (SQLite queues the writers; elsewhere the unique names make
        the second fail, and it uses the first's tokens).
        """
        tokens = {scope: auth.new_token() for scope in auth.SCOPES}
        try:
            with self._session(write=True) as s:
                if s.scalar(select(func.count()).select_from(ApiToken)):
                    return False
                for scope, token in tokens.items():
                    s.add(ApiToken(name=INITIAL_NAMES[scope], scope=scope, token_hash=auth.token_hash(token), created_at=utcnow()))
                s.flush()
                keep(tokens)
        except IntegrityError:
            return False
        return True


def _record(row: Any) -> TokenRecord:
    return TokenRecord(row.name, row.scope, convert.utc(row.created_at),
                       convert.utc(row.expires_at) if row.expires_at is not None else None)
