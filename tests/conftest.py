"""Shared fixtures: a real hub on a real SQLite file in a temp dir; a real PostgreSQL server (tests.databases)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest
import torch

from tests.databases import postgres_server  # noqa: F401  (a session fixture, started on first use)

if TYPE_CHECKING:
    from hub.core import Hub

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _deterministic_threads() -> None:
    torch.set_num_threads(1)  # see scripts/test.sh: OMP spin-waits thrash when processes share 2 cores


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """Undo what a test's in-process `genhub serve` (logs.configure) or `alembic -c alembic.ini` did to logging: their
    handlers hold the test's captured sys.stderr, closed afterwards, and every later INFO record (alembic's, on each
    new registry) would print "--- Logging error --- Traceback" into the next in-process CLI run's stderr."""
    loggers = [logging.getLogger(name) for name in ("", "alembic", "hub.access")]
    saved = [(logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    yield
    for logger, (handlers, level, propagate) in zip(loggers, saved):
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture
def hub_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh genhub home; GENHUB_HOME points at it so subprocesses share it."""
    home = tmp_path / "home"
    monkeypatch.setenv("GENHUB_HOME", str(home))
    monkeypatch.delenv("GENHUB_DB", raising=False)
    monkeypatch.delenv("GENHUB_ARTIFACTS", raising=False)
    return home


@pytest.fixture
def hub(hub_home: Path) -> Iterator["Hub"]:
    from hub.core import Hub

    with Hub.open(home=hub_home) as opened:
        yield opened


def write_plugin_project(root: Path, dist: str, module: str, source: str, entry_name: str | None = None) -> Path:
    """A throwaway plugin distribution, laid out as a third-party author would."""
    project = root / dist
    (project / module).mkdir(parents=True)
    (project / module / "__init__.py").write_text(textwrap.dedent(source))
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist}"
            version = "0.0.1"

            [project.entry-points.genhub]
            {entry_name or module} = "{module}"

            [tool.setuptools]
            packages = ["{module}"]
            """
        )
    )
    return project


def pip_install_target(project: Path, target: Path) -> None:
    """Install a distribution into ``target`` (a sys.path folder) with the real pip."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(project)],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
