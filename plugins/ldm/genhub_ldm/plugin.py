"""genhub plugin entry point (group ``genhub``, name ``ldm``): the "vae" and "ldm" families, two text encoders, checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from hub import hookimpl
from hub.hookspecs import bundled_checkpoints
from hub.model import ModelFamily
from hub.text import TextEncoder

from genhub_ldm.ldm import LDMFamily
from genhub_ldm.text import CharGramEncoder, VocabEncoder
from genhub_ldm.vae import VAEFamily


@hookimpl
def register_models(register: Callable[[ModelFamily], None]) -> None:
    register(VAEFamily())
    register(LDMFamily())


@hookimpl
def register_text_encoders(register: Callable[[TextEncoder], None]) -> None:
    register(VocabEncoder())
    register(CharGramEncoder())


# every checkpoint folder under pretrained/ (model.safetensors, card.json, card.md), synced into the registry on start
register_pretrained = bundled_checkpoints(Path(__file__).parent / "pretrained")
