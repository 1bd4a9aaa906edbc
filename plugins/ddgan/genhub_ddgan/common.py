"""Helpers both families of this plugin share: GAN losses, R1, batching, EMA, weights by prefix."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from hub.errors import InvalidArgument
from hub.model import TrainOptions, TrainProgress

if TYPE_CHECKING:
    from hub.datasets import Dataset


def d_loss_nonsaturating(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(D(real)) - log(1 - sigmoid(D(fake))), with softplus for stability."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(D(fake)): the generator loss that keeps its gradient when D wins."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """E ||grad_x D(x)||^2 on real inputs (Mescheder et al. 2018); ``real`` must require grad."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(dim=1).mean()


def index_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless [batch_size] index tensors over shuffled epochs."""
    pool = torch.empty(0, dtype=torch.long)
    while True:
        while pool.numel() < batch_size:
            pool = torch.cat([pool, torch.randperm(n, generator=generator)])
        yield pool[:batch_size]
        pool = pool[batch_size:]


@torch.no_grad()
def ema_update(ema: nn.Module, live: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), live.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), live.buffers()):
        e.copy_(b)


def ema_decay_at(step: int, decay: float) -> float:
    """EMA warm-up: short runs would otherwise sample from nearly initial weights."""
    return min(decay, (1 + step) / (10 + step))


def check_options(options: TrainOptions) -> None:
    if options.steps < 1:
        raise InvalidArgument("steps", f"must be >= 1, got {options.steps}")
    if options.batch_size < 2:
        raise InvalidArgument("batch_size", f"GAN training needs at least 2 samples per batch, got {options.batch_size}")
    if not options.learning_rate > 0:
        raise InvalidArgument("learning_rate", f"must be > 0, got {options.learning_rate}")


def check_dataset(dataset: Dataset, sample_shape: tuple[int, ...], family: str) -> None:
    if tuple(dataset.sample_shape) != tuple(sample_shape):
        raise InvalidArgument(
            "dataset",
            f"{dataset.name!r} items have shape {list(dataset.sample_shape)} but this model was built for "
            f"{list(sample_shape)}; build it with the {family!r} family's default_config(dataset)",
        )
    if len(dataset) < 2:
        raise InvalidArgument("dataset", f"{dataset.name!r} split {dataset.split!r} has {len(dataset)} items; a GAN needs at least 2")


class LossLog:
    """Mean losses per logging interval, reported through the hub's progress callback (sum of the named parts)."""

    def __init__(self, total_steps: int, names: tuple[str, ...], progress: Callable[[TrainProgress], None] | None) -> None:
        self.total, self.names, self.progress = total_steps, names, progress
        self.every = max(1, min(50, total_steps // 20))
        self.curves: dict[str, list[float]] = {n: [] for n in names}
        self.losses: list[float] = []
        self._sums = dict.fromkeys(names, 0.0)
        self._count = 0

    def add(self, step: int, lr: float, **values: float) -> None:
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            raise InvalidArgument("learning_rate", f"losses became {bad} at step {step}; lower the learning rate (was {lr}) "
                                  "or raise r1_gamma")
        for k, v in values.items():
            self._sums[k] += v
        self._count += 1
        if step % self.every == 0 or step == self.total:
            for k in self.names:
                self.curves[k].append(self._sums[k] / self._count)
            self.losses.append(sum(self.curves[k][-1] for k in self.names))
            self._sums, self._count = dict.fromkeys(self.names, 0.0), 0
            if self.progress is not None:
                self.progress(TrainProgress(step=step, total=self.total, loss=self.losses[-1]))


def modules_state_dict(modules: Mapping[str, nn.Module], extra: Mapping[str, torch.Tensor] = {}) -> dict[str, torch.Tensor]:
    """``{prefix.key: tensor}`` for every module, contiguous CPU copies (what safetensors wants)."""
    out = {f"{prefix}.{k}": v.detach().to("cpu", copy=True).contiguous()
           for prefix, module in modules.items() for k, v in module.state_dict().items()}
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
                "weights", f"{prefix} weights do not fit this config: missing {missing[:4]}, unexpected {unexpected[:4]} "
                f"({len(missing)} missing, {len(unexpected)} unexpected); load them with the config they were saved with")
        try:
            module.load_state_dict(part)
        except RuntimeError as err:
            raise InvalidArgument("weights", f"{prefix} weights do not fit this config: {err}") from None
