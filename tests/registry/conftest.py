"""Fixtures for registry tests: a real SQLite file in a tmp dir, or a fresh database on a real PostgreSQL server."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.registry import Registry
from tests.databases import BACKENDS, database_url


def fake_digest(label: str) -> str:
    """A well-formed digest for tests that do not need the artifact's bytes."""
    return hashlib.sha256(label.encode()).hexdigest()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every registry test runs on both databases."""
    return database_url(request, tmp_path)


@pytest.fixture(params=BACKENDS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database no migration has touched yet (for the tests of migrating itself)."""
    return database_url(request, tmp_path, empty=True)


@pytest.fixture
def registry(db_url: str) -> Iterator[Registry]:
    reg = Registry(db_url)
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture
def digits(registry: Registry) -> Registry:
    """A registry with model ddpm-digits at versions 1 (base), 2 (fine-tuned from 1), 3 (from 2)."""
    registry.ensure_model("ddpm-digits", "ddpm", "genhub-ddpm", "Denoising diffusion on 8x8 digits")
    registry.add_version("ddpm-digits", config={"channels": 8}, artifact_digest=fake_digest("v1"), dataset="digits")
    registry.add_version(
        "ddpm-digits",
        config={"channels": 8},
        artifact_digest=fake_digest("v2"),
        dataset="digits",
        parent="ddpm-digits:1",
    )
    registry.add_version(
        "ddpm-digits", config={"channels": 8}, artifact_digest=fake_digest("v3"), dataset="digits", parent="ddpm-digits"
    )
    return registry
