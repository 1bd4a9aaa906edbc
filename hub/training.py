"""Pieces the families' training loops share, in the spirit of diffusers' ``training_utils``; each family keeps its loop.

- ``check_options`` / ``check_dataset``: TrainOptions in range; a dataset of the model's shape and size.
- ``index_batches``: endless batches of indices over shuffled epochs; ``optimizer_step``: backward, clip, step.
- ``ema_decay_at`` / ``ema_update``: an exponential moving average of weights, with warm-up.
- ``lr_at``: a learning rate with linear warm-up and a decay to zero at the end of the run (``LR_DECAYS``).
- ``min_snr_weight``: Min-SNR-gamma loss weights of diffusion timesteps (Hang et al. 2023).
- ``LossLog``: mean losses per logging interval, reported as progress; stops on a non-finite loss.
- ``modules_state_dict`` / ``load_modules_state_dict`` and the ``ModuleWeights`` mixin: several modules saved as one
  flat ``prefix.key`` dict (what safetensors stores), loaded back with errors that name the difference.
- ``d_loss_nonsaturating``, ``g_loss_nonsaturating``, ``r1_penalty``, ``discriminator_step``: the GAN losses.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from hub.errors import InvalidArgument
from hub.model import TrainOptions, TrainProgress

if TYPE_CHECKING:
    from hub.datasets import Dataset


def check_options(options: TrainOptions, *, min_batch: int = 1, why: str = "") -> None:
    """Steps and batch size >= 1 (``min_batch``, e.g. 2 for a GAN, ``why`` saying why), a positive learning rate."""
    if options.steps < 1:
        raise InvalidArgument("steps", f"must be >= 1, got {options.steps}")
    if options.batch_size < min_batch:
        raise InvalidArgument("batch_size", f"must be >= {min_batch}{why}, got {options.batch_size}")
    if not options.learning_rate > 0:
        raise InvalidArgument("learning_rate", f"must be > 0, got {options.learning_rate}")


def check_gan_options(options: TrainOptions) -> None:
    check_options(options, min_batch=2, why=" (a GAN compares samples within a batch)")


def check_dataset(dataset: Dataset, sample_shape: tuple[int, ...], family: str, *, min_items: int = 1) -> None:
    """Items shaped like the model's samples, and at least ``min_items`` of them."""
    if tuple(dataset.sample_shape) != tuple(sample_shape):
        raise InvalidArgument(
            "dataset",
            f"{dataset.name!r} items have shape {list(dataset.sample_shape)} but this model was built for "
            f"{list(sample_shape)}; build it with the {family!r} family's default_config(dataset)",
        )
    if len(dataset) < min_items:
        raise InvalidArgument("dataset", f"{dataset.name!r} split {dataset.split!r} has {len(dataset)} items; "
                              f"{family!r} needs at least {min_items}")


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, clip_params: Iterable[nn.Parameter] = (),
                   grad_clip: float = 0.0) -> None:
    """Zero the gradients, backpropagate ``loss``, clip the gradient norm of ``clip_params`` to ``grad_clip`` (> 0), step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(clip_params, grad_clip)
    opt.step()


def index_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless [batch_size] index tensors over shuffled epochs: every item is seen once per epoch."""
    pool = torch.empty(0, dtype=torch.long)
    while True:
        while pool.numel() < batch_size:
            pool = torch.cat([pool, torch.randperm(n, generator=generator)])
        yield pool[:batch_size]
        pool = pool[batch_size:]


def ema_decay_at(step: int, decay: float, power: float = 8.0) -> float:
    """EMA warm-up (as in many DDPM codebases): short runs would otherwise sample from nearly initial weights.

    Until ``decay`` caps it, this is the power-function average of Karras et al. 2024 (EDM2): the weight of step k in
    the average at step n grows as k^power. The default 8 gives the usual (1 + step) / (10 + step), about the last
    ninth of the run; a smaller power averages a longer share of it (2: about the last third)."""
    return min(decay, (1 + step) / (power + 2 + step))


@torch.no_grad()
def ema_update(ema: nn.Module, live: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * live for parameters; buffers (running stats, w_avg, noise maps) are copied."""
    for e, p in zip(ema.parameters(), live.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), live.buffers()):
        e.copy_(b)


LR_DECAYS = ("constant", "linear", "cosine")  # how lr_at falls from the base rate after the warm-up (constant: not at all)


def lr_at(step: int, total: int, base: float, warmup: int = 0, decay: str = "constant") -> float:
    """The learning rate of step ``step`` (1-based) of ``total``: linear warm-up over ``warmup`` steps, then ``decay``
    from ``base`` to zero at ``total`` (constant: ``base`` throughout, as every family trained before these options)."""
    if decay not in LR_DECAYS:
        raise InvalidArgument("lr_decay", f"{decay!r} is not one of {list(LR_DECAYS)}")
    if step <= warmup:
        return base * step / warmup
    if decay == "constant" or total <= warmup:
        return base
    done = (step - warmup) / (total - warmup)  # in (0, 1]: the last step trains at (almost) zero
    return base * (1.0 - done if decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * done)))


def min_snr_weight(alphas_cumprod: torch.Tensor, t: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Per-sample loss weights [N] of Min-SNR-gamma (Hang et al. 2023): the x0-space weight min(SNR_t, gamma),
    rewritten for the network's target (epsilon: / SNR; v_prediction: / (SNR + 1); sample: as is). Low-noise steps,
    whose large SNR otherwise dominates the gradient, are capped, which the paper reports converges about 3x faster."""
    abar = alphas_cumprod.to(t.device)[t].to(torch.float32)
    snr = abar / (1.0 - abar)
    capped = snr.clamp(max=gamma)
    if prediction_type == "epsilon":
        return capped / snr
    if prediction_type == "v_prediction":
        return capped / (snr + 1.0)
    return capped


GAN_HINT = " or raise r1_gamma"  # LossLog hint for adversarial training


class LossLog:
    """Mean losses per logging interval (about 20 over a run, at most 50 steps apart), reported through ``progress``.

    ``add`` refuses a non-finite loss before the caller applies the update, so NaN never reaches the weights.
    The reported loss of an interval is the sum of the named parts.
    """

    def __init__(self, total_steps: int, names: tuple[str, ...], progress: Callable[[TrainProgress], None] | None,
                 hint: str = "") -> None:
        self.total, self.names, self.progress, self.hint = total_steps, names, progress, hint
        self.every = max(1, min(50, total_steps // 20))
        self.curves: dict[str, list[float]] = {n: [] for n in names}
        self.losses: list[float] = []
        self._sums = dict.fromkeys(names, 0.0)
        self._count = 0

    def add(self, step: int, lr: float, **values: float) -> None:
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            raise InvalidArgument("learning_rate", f"loss became {bad} at step {step}; lower the learning rate (was {lr})"
                                  + self.hint)
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


# -- weights of several modules ------------------------------------------------------------------


def modules_state_dict(modules: Mapping[str, nn.Module], extra: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """``{prefix.key: tensor}`` for every module (and ``extra`` as is), contiguous CPU copies (what safetensors wants)."""
    out = {f"{prefix}.{k}": v.detach().to("cpu", copy=True).contiguous()
           for prefix, module in modules.items() for k, v in module.state_dict().items()}
    out.update({k: v.detach().to("cpu", copy=True).contiguous() for k, v in (extra or {}).items()})
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
        except RuntimeError as err:  # shape mismatches
            raise InvalidArgument("weights", f"{prefix} weights do not fit this config: {err}") from None


class ModuleWeights:
    """``state_dict`` / ``load_state_dict`` / ``to`` for a model made of named modules (``_modules()``) and a
    ``train_steps`` counter saved beside them. Put it before ``GenerativeModel`` in the bases."""

    train_steps: int = 0
    device: torch.device

    def _modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def _extra_tensors(self) -> dict[str, torch.Tensor]:
        return {"train_steps": torch.tensor([self.train_steps], dtype=torch.int64)}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return modules_state_dict(self._modules(), self._extra_tensors())

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        load_modules_state_dict(self._modules(), tensors)
        if "train_steps" in tensors:
            self.train_steps = int(tensors["train_steps"].reshape(-1)[0])

    def to(self, device: torch.device | str) -> ModuleWeights:
        self.device = torch.device(device)
        for module in self._modules().values():
            module.to(self.device)
        return self

    def parameter_count(self, name: str) -> int:
        return sum(p.numel() for p in self._modules()[name].parameters())


# -- GAN losses ----------------------------------------------------------------------------------


def d_loss_nonsaturating(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(D(real)) - log(1 - sigmoid(D(fake))), written with softplus for stability."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(D(fake)): the generator loss that keeps its gradient when D wins early (Goodfellow et al. 2014)."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """E ||grad_x D(x)||^2 on real inputs (Mescheder et al. 2018); ``real`` must require grad. Differentiable."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(dim=1).mean()


def discriminator_step(opt: torch.optim.Optimizer, real_logits: torch.Tensor, fake_logits: torch.Tensor,
                       real: torch.Tensor | None = None, r1_weight: float = 0.0) -> tuple[torch.Tensor, float | None]:
    """One update of D: the non-saturating loss, plus ``r1_weight`` x R1 on ``real`` when given (lazy R1 passes
    gamma / 2 x interval on the steps it runs). Returns D's loss and the R1 value (None without R1)."""
    d_loss = d_loss_nonsaturating(real_logits, fake_logits)
    total, r1_value = d_loss, None
    if real is not None:
        r1 = r1_penalty(real_logits, real)
        total = total + r1 * r1_weight
        r1_value = float(r1.detach())
    optimizer_step(opt, total)
    return d_loss, r1_value
