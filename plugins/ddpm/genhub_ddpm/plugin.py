"""genhub plugin entry point (group ``genhub``, name ``ddpm``): the family, its samplers, its checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from hub import hookimpl
from hub.model import ModelFamily, PretrainedModel
from hub.sampling import Sampler

from genhub_ddpm.family import DDPMFamily
from genhub_ddpm.samplers import DDIMSampler, DDPMSampler

PRETRAINED_DIR = Path(__file__).parent / "pretrained"


@hookimpl
def register_models(register: Callable[[ModelFamily], None]) -> None:
    register(DDPMFamily())


@hookimpl
def register_samplers(register: Callable[[Sampler], None]) -> None:
    register(DDPMSampler())
    register(DDIMSampler())


def pretrained_dirs(root: Path = PRETRAINED_DIR) -> list[Path]:
    """Checkpoint folders shipped with the plugin: each subfolder of ``pretrained/`` holding a card.json."""
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if (d / "card.json").is_file())


@hookimpl
def register_pretrained(register: Callable[[PretrainedModel], None]) -> None:
    for directory in pretrained_dirs():
        register(PretrainedModel.from_dir(directory))
