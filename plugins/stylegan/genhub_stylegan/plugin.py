"""genhub plugin entry point (group ``genhub``, name ``stylegan``): the "stylegan" and "gan" families, their checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from hub import hookimpl
from hub.hookspecs import bundled_checkpoints
from hub.model import ModelFamily

from genhub_stylegan.gan import GANFamily
from genhub_stylegan.stylegan import StyleGANFamily


@hookimpl
def register_models(register: Callable[[ModelFamily], None]) -> None:
    register(StyleGANFamily())
    register(GANFamily())


# every checkpoint folder under pretrained/ (model.safetensors, card.json, card.md), synced into the registry on start
register_pretrained = bundled_checkpoints(Path(__file__).parent / "pretrained")
