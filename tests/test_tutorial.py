"""The README's plugin tutorial is tested code: its files, pip-installed, serve a model through the CLI and the server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from hub.client import Client
from hub.errors import InvalidArgument
from hub.images import grid
from tests.conftest import REPO, pip_install_target
from tests.server.harness import ServeProcess

FILE_BLOCK = re.compile(r"```(?:toml|python)\n# (genhub-smooth/\S+)\n(.*?)```", re.S)


def tutorial_files() -> dict[str, str]:
    """path -> text of every code block of the tutorial whose first line names its file."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Tutorial:", 1)[1].split("\n### ", 1)[0]
    return {path: text for path, text in FILE_BLOCK.findall(section)}


def test_the_tutorial_is_two_files_and_its_module_is_about_15_lines() -> None:
    files = tutorial_files()
    assert sorted(files) == ["genhub-smooth/genhub_smooth/__init__.py", "genhub-smooth/pyproject.toml"]
    code = [line for line in files["genhub-smooth/genhub_smooth/__init__.py"].splitlines() if line.strip()]
    assert len(code) <= 18, code


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tutorial's package, written from the README and really pip-installed into a folder of its own."""
    root = tmp_path_factory.mktemp("tutorial")
    for path, text in tutorial_files().items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    pip_install_target(root / "genhub-smooth", root / "site")
    return root / "site"


def test_the_tutorial_plugin_generates_through_the_cli_and_the_server(site: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    # Only the tutorial's entry point (the bundled plugins' checkpoints would only slow the start-up down).
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("GENHUB_LOAD_PLUGINS", "smooth")
    monkeypatch.setenv("GENHUB_HOME", str(home))
    genhub = [sys.executable, "-m", "hub"]
    local = tmp_path / "local.png"
    subprocess.run([*genhub, "generate", "smooth-noise", "-n", "4", "--seed", "7", "-o", str(local)],
                   check=True, capture_output=True, text=True)
    server = ServeProcess(SimpleNamespace(home=home, db_url=f"sqlite:///{home}/registry.db"))
    try:
        remote = tmp_path / "remote.png"
        shown = subprocess.run([*genhub, "generate", "smooth-noise", "-n", "4", "--seed", "7", "--server", server.address,
                                "-o", str(remote)], check=True, capture_output=True, text=True)
        assert "smooth-noise:1" in shown.stdout
        with Client(server.address, timeout=60) as client:
            result = client.generate("smooth-noise", num_samples=4, seed=7, format="tensor")
            with pytest.raises(InvalidArgument, match="class_label: this model is not class-conditional"):
                client.generate("smooth-noise", class_label=1)
    finally:
        assert server.terminate() == 0, server.log
    samples = result.samples  # [4, 1, 16, 16]
    assert samples.shape == (4, 1, 16, 16) and samples.abs().max() <= 1.0
    assert not torch.allclose(samples[0], samples[1])  # each image from its own seed
    pixels = np.asarray(Image.open(local))
    assert np.array_equal(pixels, np.asarray(Image.open(remote)))
    assert np.array_equal(pixels, np.asarray(grid(samples)))  # the CLI's grid of the server's tensors
