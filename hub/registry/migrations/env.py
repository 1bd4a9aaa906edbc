"""Alembic environment for the genhub registry.

``hub.registry.db.upgrade`` passes an open connection in ``config.attributes``;
the ``alembic`` command line (``alembic -c hub/registry/migrations/alembic.ini``)
connects to ``sqlalchemy.url``, else ``$GENHUB_DB``, else the default registry.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from hub.registry.db import WRITE, create_registry_engine
from hub.registry.orm import Base
from hub.registry.paths import default_db_url

config = context.config
if config.config_file_name is not None:  # the alembic command line; genhub itself passes no ini
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or default_db_url()


def _run(connection: Connection) -> None:
    # Batch mode: SQLite can only ALTER tables by copying them.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_registry_engine(_url())
    try:
        with engine.connect() as conn:
            conn.execution_options(**{WRITE: True})  # SQLite: BEGIN IMMEDIATE, as in upgrade()
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
