"""genhub plugin entry point (group ``genhub``, name ``stylegan``): the "stylegan" and "gan" families, their checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from hub import hookimpl
from hub.model import ModelFamily, PretrainedModel

from genhub_stylegan.gan import GANFamily
from genhub_stylegan.stylegan import StyleGANFamily

PRETRAINED_DIR = Path(__file__).parent / "pretrained"


@hookimpl
def register_models(register: Callable[[ModelFamily], None]) -> None:
    register(StyleGANFamily())
    register(GANFamily())


def pretrained_dirs(root: Path = PRETRAINED_DIR) -> list[Path]:
    """Checkpoint folders shipped with the plugin: each subfolder of ``pretrained/`` holding a card.json."""
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if (d / "card.json").is_file())


@hookimpl
def register_pretrained(register: Callable[[PretrainedModel], None]) -> None:
    for directory in pretrained_dirs():
        register(PretrainedModel.from_dir(directory))
