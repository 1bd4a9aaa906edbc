"""`genhub export` and bundled checkpoints: what a plugin ships is what the registry had, parents synced first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from hub import hookimpl
from hub.cards import export_checkpoint
from hub.core import Hub
from hub.model import PretrainedModel, TrainOptions

TINY = {"base_channels": 8, "channel_mults": [1, 2], "sample_shape": [1, 8, 8], "num_classes": 0}


class ShippingPlugin:
    """Registers checkpoint folders in the order given (children before parents, on purpose)."""

    def __init__(self, folders: list[Path]) -> None:
        self.folders = folders

    @hookimpl
    def register_pretrained(self, register: Callable[[PretrainedModel], None]) -> None:
        for folder in self.folders:
            register(PretrainedModel.from_dir(folder))


def test_exported_checkpoints_sync_with_lineage_and_full_figures(tmp_path: Path) -> None:
    with Hub.open(home=tmp_path / "build") as hub:
        options = TrainOptions(steps=2, batch_size=4, learning_rate=1e-3)
        base = hub.train("ddpm", "digits", model_name="base-x", options=options, config_overrides=TINY, command="tests: base")
        child = hub.train("ddpm", "digits", model_name="child-x", options=options, config_overrides=TINY, parent=base.ref,
                          command="tests: child")
        hub.registry.add_metric(child.ref, "latency_p50_ms_batch1", 12.5, data="digits", hardware="cpu x1",
                                sampler="ddim", steps=50, num_samples=3, details={"batch": 1})
        export_checkpoint(hub, child.ref, tmp_path / "ship" / "child-x")
        export_checkpoint(hub, base.ref, tmp_path / "ship" / "base-x")
    meta = json.loads((tmp_path / "ship" / "child-x" / "card.json").read_text())
    assert meta["parent"] == "base-x:1"
    plugin = ShippingPlugin([tmp_path / "ship" / "child-x", tmp_path / "ship" / "base-x"])
    with Hub.open(home=tmp_path / "fresh", extra_plugins=[("shipping", plugin)]) as fresh:
        synced = fresh.resolve("child-x")
        assert synced.parent == "base-x:1" and synced.artifact_digest == child.artifact_digest
        assert "pretrained" in synced.tags
        [figure] = fresh.registry.metrics(synced.ref)
        assert (figure.name, figure.value, figure.hardware, figure.sampler, figure.steps, figure.details) == (
            "latency_p50_ms_batch1", 12.5, "cpu x1", "ddim", 50, {"batch": 1})
        assert fresh.registry.training_runs(synced.ref)[0].command == "tests: child"
        fresh.sync()  # idempotent
        assert [v.version for v in fresh.registry.list_versions("child-x")] == [1]
