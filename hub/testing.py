"""pytest fixtures for plugin tests; a plugin's conftest.py imports the ones it wants:

    from hub.testing import hub, one_thread  # noqa: F401  (pytest fixtures)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest
import torch

if TYPE_CHECKING:
    from hub.core import Hub


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)  # tiny models: a second thread costs more than it gives (and the machine is shared)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    """A real hub (every installed plugin, bundled checkpoints synced) on a real SQLite file in a temp dir."""
    from hub.core import Hub

    monkeypatch.setenv("GENHUB_HOME", str(tmp_path / "home"))
    with Hub.open(home=tmp_path / "home") as opened:
        yield opened


def run_cli(capfd: pytest.CaptureFixture[str], home: Path, *args: str) -> tuple[int, str, str]:
    """`genhub --home HOME ARGS` through its entry point in this process (its start-up paid once): (exit code, stdout,
    stderr)."""
    from hub.cli import main

    try:
        main(["--home", str(home), *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capfd.readouterr()
    return code, out, err
