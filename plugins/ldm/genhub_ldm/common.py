"""Small helpers shared by the autoencoder and the latent denoiser."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Mapping

import torch
from torch import nn

from hub.errors import InvalidArgument
from hub.model import TrainOptions


def check_options(options: TrainOptions) -> None:
    if options.steps < 1:
        raise InvalidArgument("steps", f"must be >= 1, got {options.steps}")
    if options.batch_size < 1:
        raise InvalidArgument("batch_size", f"must be >= 1, got {options.batch_size}")
    if not options.learning_rate > 0:
        raise InvalidArgument("learning_rate", f"must be > 0, got {options.learning_rate}")


def index_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless [batch_size] index tensors from shuffled epochs."""
    pool = torch.empty(0, dtype=torch.long)
    while True:
        while pool.numel() < batch_size:
            pool = torch.cat([pool, torch.randperm(n, generator=generator)])
        yield pool[:batch_size]
        pool = pool[batch_size:]


def modules_state(modules: Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Flat ``prefix.key`` -> contiguous CPU tensor dict of several modules."""
    out: dict[str, torch.Tensor] = {}
    for prefix, module in modules.items():
        for key, value in module.state_dict().items():
            out[f"{prefix}.{key}"] = value.detach().to("cpu", copy=True).contiguous()
    return out


def load_modules_state(modules: Mapping[str, nn.Module], tensors: Mapping[str, torch.Tensor]) -> None:
    """Inverse of ``modules_state``; a mismatch is an InvalidArgument naming what is missing or extra."""
    for prefix, module in modules.items():
        part = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        expected = set(module.state_dict())
        missing, unexpected = sorted(expected - set(part)), sorted(set(part) - expected)
        if missing or unexpected:
            raise InvalidArgument(
                "weights",
                f"{prefix} weights do not fit this config: missing {missing[:4]}, unexpected {unexpected[:4]}; "
                "load them with the config they were saved with",
            )
        try:
            module.load_state_dict(part)
        except RuntimeError as err:
            raise InvalidArgument("weights", f"{prefix} weights do not fit this config: {err}") from None
