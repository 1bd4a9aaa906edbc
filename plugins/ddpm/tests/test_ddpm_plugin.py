"""The plugin module, as the hub discovers it through the ``genhub`` entry-point group."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

import pluggy

from hub import hookspecs
from hub.model import ModelFamily, PretrainedModel
from hub.sampling import Sampler

import genhub_ddpm.plugin as plugin


def _manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("genhub")
    pm.add_hookspecs(hookspecs)
    pm.register(plugin, name="ddpm")
    pm.check_pending()  # every hookimpl matches a hookspec
    return pm


def test_entry_point_names_the_plugin_module() -> None:
    (ep,) = [ep for ep in entry_points(group="genhub") if ep.name == "ddpm"]
    assert ep.value == "genhub_ddpm.plugin"
    assert ep.load() is plugin


def test_registers_family_and_samplers() -> None:
    families: list[ModelFamily] = []
    samplers: list[Sampler] = []
    pm = _manager()
    pm.hook.register_models(register=families.append)
    pm.hook.register_samplers(register=samplers.append)
    assert [f.name for f in families] == ["ddpm"]
    assert sorted(s.name for s in samplers) == ["ddim", "ddpm", "dpmpp-2m"]


def test_pretrained_folders_with_a_card_are_registered(tmp_path: Path) -> None:
    assert PretrainedModel.in_folder(tmp_path / "missing") == []
    (tmp_path / "no-card").mkdir()
    good = tmp_path / "ddpm-toy"
    good.mkdir()
    card = {"name": "ddpm-toy", "family": "ddpm", "config": {"num_timesteps": 10, "default_steps": 5}, "dataset": "toy"}
    (good / "card.json").write_text(json.dumps(card))
    (model,) = PretrainedModel.in_folder(tmp_path)
    assert model.name == "ddpm-toy" and model.weights == good / "model.safetensors"


def test_shipped_pretrained_register_cleanly() -> None:
    shipped: list[PretrainedModel] = []
    _manager().hook.register_pretrained(register=shipped.append)
    for model in shipped:
        assert model.family == "ddpm" and model.weights.is_file()
    assert {m.name for m in shipped} >= {"ddpm-digits", "ddpm-grid25"}
