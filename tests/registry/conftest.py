"""Fixtures for registry tests: a real SQLite file in a tmp dir."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.registry import Registry


def fake_digest(label: str) -> str:
    """A well-formed digest for tests that do not need the artifact's bytes."""
    return hashlib.sha256(label.encode()).hexdigest()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


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
