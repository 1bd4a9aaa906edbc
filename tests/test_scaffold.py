"""`genhub plugin new NAME` writes a package that installs and passes its own test as generated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub.errors import AlreadyExists, InvalidArgument
from hub.scaffold import new_plugin
from tests.conftest import pip_install_target


def test_the_generated_plugin_installs_and_passes_its_own_test(tmp_path: Path) -> None:
    shown = subprocess.run([sys.executable, "-m", "hub", "plugin", "new", "my-model", "--dir", str(tmp_path)],
                           check=True, capture_output=True, text=True)
    root = tmp_path / "genhub-my-model"
    assert "wrote" in shown.stdout and (root / "genhub_my_model" / "pretrained" / "my-model-demo" / "model.safetensors").is_file()
    site = tmp_path / "site"
    pip_install_target(root, site)  # a real, non-editable install: the checkpoint must travel as package data
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "GENHUB_LOAD_PLUGINS": "my_model"}
    # Run from tmp_path, so the test imports the installed package, not the source folder.
    ran = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "1 passed" in ran.stdout
    assert str(site) in subprocess.run([sys.executable, "-c", "import genhub_my_model; print(genhub_my_model.__file__)"],
                                       cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout


def test_bad_names_and_existing_folders_are_refused_and_left_alone(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="NAME: 'My Model' must be lower case"):
        new_plugin("My Model", tmp_path)
    (tmp_path / "genhub-taken").mkdir()
    (tmp_path / "genhub-taken" / "keep.txt").write_text("mine")
    with pytest.raises(AlreadyExists, match="already exists"):
        new_plugin("taken", tmp_path)
    assert [p.name for p in (tmp_path / "genhub-taken").iterdir()] == ["keep.txt"]
    shown = subprocess.run([sys.executable, "-m", "hub", "plugin", "new", "Bad!", "--dir", str(tmp_path)],
                           capture_output=True, text=True)
    assert shown.returncode == 1 and "Traceback" not in shown.stderr and "must be lower case" in shown.stderr
