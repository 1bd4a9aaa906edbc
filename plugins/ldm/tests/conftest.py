"""Fixtures for the genhub-ldm tests: one thread, and a real hub on a real SQLite file in a temp dir."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest
import torch

if TYPE_CHECKING:
    from hub.core import Hub


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # tiny models: a second thread costs more than it gives (and the machine is shared)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator["Hub"]:
    from hub.core import Hub

    monkeypatch.setenv("GENHUB_HOME", str(tmp_path / "home"))
    with Hub.open(home=tmp_path / "home") as opened:
        yield opened
