"""Fixtures of the server tests (defined in harness.py, next to their helpers)."""

from tests.server.harness import db_server, serve_process, server, tiny, tiny_db, tiny_pg  # noqa: F401  (pytest fixtures)
