"""Where genhub keeps its registry database and artifacts by default.

``GENHUB_HOME`` moves everything; ``GENHUB_DB`` (any SQLAlchemy URL) and
``GENHUB_ARTIFACTS`` (a directory) move one part each and win over the home.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def default_home() -> Path:
    """``$GENHUB_HOME``, else the per-user data directory for "genhub"."""
    env = os.environ.get("GENHUB_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("genhub", appauthor=False))


def default_db_url(home: Path | None = None) -> str:
    """``$GENHUB_DB``, else ``sqlite:///<home>/registry.db``."""
    env = os.environ.get("GENHUB_DB")
    if env:
        return env
    home = default_home() if home is None else Path(home)
    return f"sqlite:///{home.expanduser().resolve() / 'registry.db'}"


def default_artifacts_root(home: Path | None = None) -> Path:
    """``$GENHUB_ARTIFACTS``, else ``<home>/artifacts``."""
    env = os.environ.get("GENHUB_ARTIFACTS")
    if env:
        return Path(env).expanduser()
    home = default_home() if home is None else Path(home)
    return home.expanduser() / "artifacts"
