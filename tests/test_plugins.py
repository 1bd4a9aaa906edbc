"""Plugin discovery through the `genhub` entry-point group, with no change to hub/."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hub import hookspecs
from hub.core import Hub
from hub.errors import StartupError
from hub.plugins import load_plugins
from tests.conftest import REPO, pip_install_target, write_plugin_project

# A complete third-party family: a per-pixel Gaussian fitted to the data.
THIRD_PARTY = '''
from dataclasses import dataclass
import torch
from hub import hookimpl
from hub.model import (Capabilities, GenerativeModel, ModelConfig, ModelFamily, NoiseSource, StepEvent, TrainResult,
                       report_step)


@dataclass
class GaussConfig(ModelConfig):
    sample_shape: tuple = (1, 8, 8)


class GaussModel(GenerativeModel):
    def __init__(self, config):
        self.config = config
        self.mean = torch.zeros(config.sample_shape)
        self.std = torch.ones(config.sample_shape)

    @property
    def capabilities(self):
        return Capabilities(output_kind="image", sample_shape=self.config.sample_shape)

    def train(self, dataset, options, progress=None):
        self.mean, self.std = dataset.data.mean(0), dataset.data.std(0)
        return TrainResult(losses=[0.0])

    def sample(self, request, callback=None):
        noise = NoiseSource(request.seeds)
        report_step(callback, StepEvent(1, 1))
        return (self.mean + self.std * noise.randn(*self.config.sample_shape)).clamp(-1, 1)

    def state_dict(self):
        return {"mean": self.mean.contiguous(), "std": self.std.contiguous()}

    def load_state_dict(self, tensors):
        self.mean, self.std = tensors["mean"], tensors["std"]


class GaussFamily(ModelFamily):
    name = "thirdparty-gauss"
    config_class = GaussConfig
    description = "a per-pixel Gaussian, from a third-party plugin"

    def build(self, config, context):
        return GaussModel(config)


@hookimpl
def register_models(register):
    register(GaussFamily())
'''

BROKEN_IMPORT = "raise ImportError('this plugin needs the package frobnicate; pip install frobnicate')\n"

BROKEN_HOOK = '''
from hub import hookimpl

@hookimpl
def register_datasets(register):
    raise RuntimeError("dataset files missing")
'''



@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding really pip-installed throwaway plugins."""
    root = tmp_path_factory.mktemp("plugins")
    target = root / "site"
    for dist, module, source in [
        ("genhub-thirdparty", "thirdparty_gauss", THIRD_PARTY),
        ("genhub-broken-import", "broken_import", BROKEN_IMPORT),
        ("genhub-broken-hook", "broken_hook", BROKEN_HOOK),
    ]:
        pip_install_target(write_plugin_project(root / "src", dist, module, source), target)
    return target


@pytest.fixture
def on_path(site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    return site


def test_third_party_plugin_is_discovered_through_its_entry_point(on_path: Path, hub_home: Path) -> None:
    with Hub.open(home=hub_home) as hub:
        assert "thirdparty-gauss" in hub.parts.families
        infos = {p.name: p for p in hub.plugins()}
        assert infos["thirdparty_gauss"].status == "loaded"
        assert infos["thirdparty_gauss"].distribution == "genhub-thirdparty"
        assert infos["thirdparty_gauss"].version == "0.0.1"
        recorded = {p.name: p.status for p in hub.registry.list_plugins()}
        assert recorded["thirdparty_gauss"] == "loaded"


def test_broken_plugins_are_reported_and_the_hub_carries_on(on_path: Path, hub_home: Path) -> None:
    with Hub.open(home=hub_home) as hub:
        infos = {p.name: p for p in hub.plugins()}
        assert infos["broken_import"].status == "failed"
        assert "pip install frobnicate" in infos["broken_import"].error
        assert infos["broken_hook"].status == "failed"
        assert "dataset files missing" in infos["broken_hook"].error
        # everything else still works
        assert "digits" in hub.parts.datasets and "thirdparty-gauss" in hub.parts.families
        recorded = {p.name: (p.status, p.error) for p in hub.registry.list_plugins()}
        assert recorded["broken_import"][0] == "failed" and "frobnicate" in recorded["broken_import"][1]


def test_cli_shows_failed_plugins_and_trains_and_generates_with_a_third_party_family(site: Path, hub_home: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    genhub = [sys.executable, "-m", "hub"]
    shown = subprocess.run([*genhub, "plugins"], env=env, capture_output=True, text=True, check=True)
    assert re.search(r"broken_import.*failed", shown.stdout)
    assert re.search(r"thirdparty_gauss.*loaded", shown.stdout)
    subprocess.run([*genhub, "train", "thirdparty-gauss", "--dataset", "digits", "--steps", "1", "--name", "gauss"],
                   env=env, check=True, capture_output=True)
    grid = tmp_path / "g.png"
    subprocess.run([*genhub, "generate", "gauss", "-n", "4", "-o", str(grid)], env=env, check=True, capture_output=True)
    assert grid.stat().st_size > 100


def test_two_plugins_registering_the_same_model_name_is_a_startup_error_naming_both(on_path: Path) -> None:
    module = importlib.import_module("thirdparty_gauss")

    class Copycat:
        @hookspecs.hookimpl
        def register_models(self, register):  # noqa: ANN001
            register(module.GaussFamily())

    with pytest.raises(StartupError) as error:
        load_plugins(extra=[("copycat", Copycat())])
    assert "thirdparty_gauss" in str(error.value) and "copycat" in str(error.value)
    assert "'thirdparty-gauss'" in str(error.value)


def test_disable_plugins_by_environment(on_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENHUB_DISABLE_PLUGINS", "thirdparty_gauss")
    host, parts = load_plugins()
    assert "thirdparty-gauss" not in parts.families
    assert host.infos["thirdparty_gauss"].status == "disabled"


def test_every_hook_is_documented_in_the_readme_with_its_exact_signature() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Write a plugin", 1)[1].split("\n## ", 1)[0]
    hooks = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")]
    assert len(hooks) >= 5
    for name in hooks:
        fn = getattr(hookspecs, name)
        sig = inspect.signature(fn)  # annotations are strings (postponed evaluation)
        params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
        signature = f"def {name}({params}) -> {sig.return_annotation}:"
        assert signature in section, f"README's plugin section lacks `{signature}`"
        assert inspect.getdoc(fn).splitlines()[0] in section, f"README lacks the docstring of {name}"
