"""genhub plugin entry point (group ``genhub``, name ``ldm``): the "vae" and "ldm" families, two text encoders, checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from hub import hookimpl
from hub.model import ModelFamily, PretrainedModel
from hub.text import TextEncoder

from genhub_ldm.ldm import LDMFamily
from genhub_ldm.text import CharGramEncoder, VocabEncoder
from genhub_ldm.vae import VAEFamily

PRETRAINED_DIR = Path(__file__).parent / "pretrained"


@hookimpl
def register_models(register: Callable[[ModelFamily], None]) -> None:
    register(VAEFamily())
    register(LDMFamily())


@hookimpl
def register_text_encoders(register: Callable[[TextEncoder], None]) -> None:
    register(VocabEncoder())
    register(CharGramEncoder())


def pretrained_dirs(root: Path = PRETRAINED_DIR) -> list[Path]:
    """Checkpoint folders shipped with the plugin: each subfolder of ``pretrained/`` holding a card.json."""
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if (d / "card.json").is_file())


@hookimpl
def register_pretrained(register: Callable[[PretrainedModel], None]) -> None:
    # The hub syncs parents first (the denoiser's parent is the autoencoder), whatever the order here.
    for directory in pretrained_dirs():
        register(PretrainedModel.from_dir(directory))
