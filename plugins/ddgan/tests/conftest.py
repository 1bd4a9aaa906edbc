"""Fixtures for the genhub-ddgan tests: one thread, and a real hub on a real SQLite file in a temp dir."""

from hub.testing import hub, one_thread  # noqa: F401  (pytest fixtures)
