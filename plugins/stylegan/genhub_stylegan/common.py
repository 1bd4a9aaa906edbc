"""What both GAN families' models share: weights by prefix, dataset checks, the EMA update."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import torch
from torch import nn

from hub.errors import InvalidArgument

if TYPE_CHECKING:
    from hub.datasets import Dataset


def modules_state_dict(modules: Mapping[str, nn.Module], extra: Mapping[str, torch.Tensor] = {}) -> dict[str, torch.Tensor]:
    """``{prefix.key: tensor}`` for every module, as contiguous CPU copies (what safetensors wants)."""
    out: dict[str, torch.Tensor] = {}
    for prefix, module in modules.items():
        for key, value in module.state_dict().items():
            out[f"{prefix}.{key}"] = value.detach().to("cpu", copy=True).contiguous()
    out.update({k: v.detach().to("cpu", copy=True).contiguous() for k, v in extra.items()})
    return out


def load_modules_state_dict(modules: Mapping[str, nn.Module], tensors: Mapping[str, torch.Tensor]) -> None:
    """Load ``modules_state_dict`` output; a key set or shape that does not fit names the difference."""
    for prefix, module in modules.items():
        part = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        expected = set(module.state_dict())
        missing, unexpected = sorted(expected - set(part)), sorted(set(part) - expected)
        if missing or unexpected:
            raise InvalidArgument(
                "weights",
                f"{prefix} weights do not fit this config: missing {missing[:4]}, unexpected {unexpected[:4]} "
                f"({len(missing)} missing, {len(unexpected)} unexpected); load them with the config they were saved with",
            )
        try:
            module.load_state_dict(part)
        except RuntimeError as err:  # shape mismatches
            raise InvalidArgument("weights", f"{prefix} weights do not fit this config: {err}") from None


@torch.no_grad()
def ema_update(ema: nn.Module, live: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * live for parameters; buffers (e.g. w_avg, noise maps) are copied."""
    for e, p in zip(ema.parameters(), live.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), live.buffers()):
        e.copy_(b)


def check_dataset(dataset: Dataset, sample_shape: tuple[int, ...], family: str) -> None:
    if tuple(dataset.sample_shape) != tuple(sample_shape):
        raise InvalidArgument(
            "dataset",
            f"{dataset.name!r} items have shape {list(dataset.sample_shape)} but this model was built for "
            f"{list(sample_shape)}; build it with the {family!r} family's default_config(dataset)",
        )
    if len(dataset) < 2:
        raise InvalidArgument("dataset", f"{dataset.name!r} split {dataset.split!r} has {len(dataset)} items; a GAN needs at least 2")
