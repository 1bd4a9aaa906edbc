"""genhub plugin entry point (group ``genhub``, name ``ddgan``): the "ddgan" and "distill" families, their checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from hub import hookimpl
from hub.hookspecs import bundled_checkpoints
from hub.model import ModelFamily

from genhub_ddgan.ddgan import DDGANFamily
from genhub_ddgan.distill import DistillFamily


@hookimpl
def register_models(register: Callable[[ModelFamily], None]) -> None:
    register(DDGANFamily())
    register(DistillFamily())


# every checkpoint folder under pretrained/ (model.safetensors, card.json, card.md), synced into the registry on start
register_pretrained = bundled_checkpoints(Path(__file__).parent / "pretrained")
