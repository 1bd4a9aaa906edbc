"""Engine set-up and schema migrations for the registry database.

SQLite gets WAL (readers never block the writer) with ``synchronous=NORMAL``, foreign keys, a 30 s busy
timeout, and SQLAlchemy-controlled transactions: reads ``BEGIN`` (deferred),
writes ``BEGIN IMMEDIATE`` so two writers queue on the busy timeout instead of
one failing when it upgrades a read lock. Migrations run in one write
transaction, which is what lets two processes open a fresh file at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from hub.errors import InvalidArgument

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_S = 30.0
WRITE = "genhub_write"  # execution option: this transaction will write
_PG_MIGRATION_LOCK = 0x67656E687562  # "genhub": an arbitrary advisory-lock key


def parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise InvalidArgument(
            "url", f"{url!r} is not a SQLAlchemy database URL ({exc}); use e.g. sqlite:////abs/path/registry.db"
        ) from None


def is_sqlite_memory(url: URL) -> bool:
    """True for SQLite URLs that name no file (each would be a fresh empty DB per connection)."""
    if url.get_backend_name() != "sqlite":
        return False
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def create_registry_engine(url: str | URL) -> Engine:
    """An engine for ``url`` with genhub's SQLite settings applied; other backends as given."""
    u = parse_url(url) if isinstance(url, str) else url
    if u.get_backend_name() != "sqlite":
        return create_engine(u, pool_pre_ping=True)
    memory = is_sqlite_memory(u)
    kwargs: dict[str, Any]
    if memory:
        # One shared connection, or every pooled connection would see its own empty DB.
        kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    else:
        assert u.database is not None
        Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)  # sqlite makes no directories
        kwargs = {"connect_args": {"timeout": BUSY_TIMEOUT_S}}
    engine = create_engine(u, **kwargs)
    _install_sqlite_hooks(engine, wal=not memory)
    return engine


def _install_sqlite_hooks(engine: Engine, *, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver must not emit BEGIN itself; _on_begin does
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")  # before WAL: that needs a lock
        cur.execute("PRAGMA foreign_keys = ON")
        if wal:
            cur.execute("PRAGMA journal_mode = WAL")
            # Under WAL, NORMAL syncs at checkpoints, not at every commit: a crash of the process never
            # loses a commit, a power cut may lose the last ones, and the file stays consistent either way.
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")


def require_shared_backend(url: str | URL, nodes: int) -> None:
    """Refuse a SQLite registry for a cluster of more than one node (InvalidArgument says what to use)."""
    u = parse_url(url) if isinstance(url, str) else url
    if nodes > 1 and u.get_backend_name() == "sqlite":
        raise InvalidArgument(
            "db",
            f"the registry {u.render_as_string()} is a SQLite file, but this Ray cluster has {nodes} nodes: SQLite is not "
            "safe to write from several machines (WAL mode needs shared memory on one host; on a network filesystem "
            "writes can be lost). Point --db or GENHUB_DB at PostgreSQL, e.g. "
            "postgresql+psycopg://genhub:PASSWORD@db-host:5432/genhub, and keep only artifacts on the shared volume",
        )


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at genhub's migration scripts (no ini file needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` in one write transaction (a no-op when current)."""
    cfg = alembic_config()
    target = ScriptDirectory.from_config(cfg).get_current_head() if revision == "head" else revision
    with engine.connect() as conn:
        # Already current (the usual case): a plain read, so no write lock and read-only files open.
        current = MigrationContext.configure(conn).get_current_revision()
        conn.rollback()
        if current == target:
            return
    with engine.connect() as conn:
        conn.execution_options(**{WRITE: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":  # serialise concurrent first starts
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, revision)
            except CommandError as exc:
                raise InvalidArgument(
                    "url",
                    f"cannot migrate the registry at {engine.url.render_as_string()} ({exc}); "
                    "it was probably written by a newer genhub: upgrade genhub or point GENHUB_DB elsewhere",
                ) from None
