"""Fixtures of the server tests (defined in harness.py, next to their helpers)."""

from tests.server.harness import serve_process, server, tiny  # noqa: F401  (pytest fixtures)
