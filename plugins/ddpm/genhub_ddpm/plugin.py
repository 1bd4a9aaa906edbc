"""genhub plugin entry point (group ``genhub``, name ``ddpm``): the family, its samplers, its checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from hub import hookimpl
from hub.hookspecs import bundled_checkpoints
from hub.model import ModelFamily
from hub.sampling import Sampler

from genhub_ddpm.family import DDPMFamily
from genhub_ddpm.samplers import DDIMSampler, DDPMSampler, DPMSolverSampler


@hookimpl
def register_models(register: Callable[[ModelFamily], None]) -> None:
    register(DDPMFamily())


@hookimpl
def register_samplers(register: Callable[[Sampler], None]) -> None:
    register(DDPMSampler())
    register(DDIMSampler())
    register(DPMSolverSampler())


# every checkpoint folder under pretrained/ (model.safetensors, card.json, card.md), synced into the registry on start
register_pretrained = bundled_checkpoints(Path(__file__).parent / "pretrained")
