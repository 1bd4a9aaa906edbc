"""The hooks a genhub plugin may implement.

Each hook receives a ``register`` callback (or the CLI group) and calls it once
per thing it contributes; see the README's "Write a plugin" section.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    import click

    from hub.datasets import DatasetSpec
    from hub.model import ModelFamily, PretrainedModel
    from hub.sampling import Sampler
    from hub.text import TextEncoder

hookspec = pluggy.HookspecMarker("genhub")
hookimpl = pluggy.HookimplMarker("genhub")


@hookspec
def register_models(register: Callable[[ModelFamily], None]) -> None:
    """Register model families: call ``register(family)`` once per family."""


@hookspec
def register_pretrained(register: Callable[[PretrainedModel], None]) -> None:
    """Register bundled checkpoints, synced into the registry on start."""


@hookspec
def register_samplers(register: Callable[[Sampler], None]) -> None:
    """Register samplers that any diffusion family can use."""


@hookspec
def register_text_encoders(register: Callable[[TextEncoder], None]) -> None:
    """Register text encoders that any text-conditional family can use."""


@hookspec
def register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register offline datasets that models can be trained and evaluated on."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``genhub`` command-line interface."""


def bundled_checkpoints(root: Path) -> Callable[[Callable[[PretrainedModel], None]], None]:
    """A ``register_pretrained`` hook for a plugin module that registers every checkpoint folder under ``root``:
    ``register_pretrained = bundled_checkpoints(Path(__file__).parent / "pretrained")``."""

    def register_pretrained(register: Callable[[PretrainedModel], None]) -> None:
        from hub.model import PretrainedModel

        for pretrained in PretrainedModel.in_folder(root):
            register(pretrained)

    return hookimpl(register_pretrained)
