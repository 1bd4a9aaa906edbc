"""The adversarial training loop both GAN families share: non-saturating loss, optional lazy R1, optional
differentiable augmentation, an after-step hook (the EMA of the generator).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from hub.errors import InvalidArgument
from hub.model import TrainOptions, TrainProgress, TrainResult

from genhub_stylegan.augment import diff_augment


def d_loss_nonsaturating(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(D(x)) - log(1 - sigmoid(D(G(z)))), written with softplus for stability."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(D(G(z))): the generator loss that does not saturate when D wins early (Goodfellow et al. 2014)."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """E ||grad_x D(x)||^2 on real data (Mescheder et al. 2018); ``real`` must require grad. Differentiable."""
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


def check_options(options: TrainOptions) -> None:
    if options.steps < 1:
        raise InvalidArgument("steps", f"must be >= 1, got {options.steps}")
    if options.batch_size < 2:
        raise InvalidArgument("batch_size", f"GAN training needs at least 2 samples per batch, got {options.batch_size}")
    if not options.learning_rate > 0:
        raise InvalidArgument("learning_rate", f"must be > 0, got {options.learning_rate}")


@dataclass
class AdversarialSetup:
    """What the loop needs from a family: the two networks, how to make fakes, and the regularisation."""

    generator: nn.Module
    discriminator: nn.Module
    generate: Callable[[int], torch.Tensor]  # batch size -> fakes [B, ...], differentiable w.r.t. the generator
    betas: tuple[float, float] = (0.0, 0.99)
    d_lr_ratio: float = 1.0  # D's learning rate = ratio x options.learning_rate
    r1_gamma: float = 0.0  # 0: no R1
    r1_interval: int = 1  # lazy regularisation: R1 every k-th D step, weighted by k
    augment: tuple[str, ...] = ()  # DiffAugment policy, applied to reals and fakes alike
    after_step: Callable[[], None] | None = None  # e.g. the EMA update


def _adam(params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], lazy_interval: int) -> torch.optim.Adam:
    # Lazy regularisation changes the effective step; the paper rescales lr and betas by c = k / (k + 1).
    c = lazy_interval / (lazy_interval + 1) if lazy_interval > 1 else 1.0
    return torch.optim.Adam(params, lr=lr * c, betas=(betas[0] ** c, betas[1] ** c))


def train_adversarial(
    setup: AdversarialSetup, data: torch.Tensor, options: TrainOptions, device: torch.device,
    progress: Callable[[TrainProgress], None] | None = None,
) -> TrainResult:
    """Alternate one D step and one G step ``options.steps`` times; deterministic for ``options.seed`` on the CPU.

    ``data``: [N, C, H, W] or [N, D] on the CPU. The logged loss is D's loss + G's loss; both curves are in ``extra``.
    """
    check_options(options)
    G, D = setup.generator, setup.discriminator
    lazy = setup.r1_interval if setup.r1_gamma > 0 else 1
    opt_g = _adam(G.parameters(), options.learning_rate, setup.betas, 1)
    opt_d = _adam(D.parameters(), options.learning_rate * setup.d_lr_ratio, setup.betas, lazy)
    log_every = max(1, min(50, options.steps // 20))
    losses: list[float] = []
    d_curve: list[float] = []
    g_curve: list[float] = []
    r1_last = 0.0
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # seeded, without disturbing the caller's RNG
        torch.manual_seed(options.seed)
        batches = index_batches(data.shape[0], options.batch_size, torch.Generator().manual_seed(options.seed))
        G.train()
        D.train()
        sums = [0.0, 0.0]
        for step in range(1, options.steps + 1):
            real = data[next(batches)].to(device)
            # -- discriminator
            do_r1 = setup.r1_gamma > 0 and step % setup.r1_interval == 0
            real.requires_grad_(do_r1)
            G.requires_grad_(False)
            D.requires_grad_(True)
            with torch.no_grad():
                fake = setup.generate(real.shape[0])
            real_logits = D(diff_augment(real, setup.augment))
            d_loss = d_loss_nonsaturating(real_logits, D(diff_augment(fake, setup.augment)))
            total = d_loss
            if do_r1:
                r1 = r1_penalty(real_logits, real)
                total = total + r1 * (setup.r1_gamma / 2 * setup.r1_interval)
                r1_last = float(r1.detach())
            opt_d.zero_grad(set_to_none=True)
            total.backward()
            opt_d.step()
            # -- generator
            G.requires_grad_(True)
            D.requires_grad_(False)
            g_loss = g_loss_nonsaturating(D(diff_augment(setup.generate(real.shape[0]), setup.augment)))
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            if setup.after_step is not None:
                setup.after_step()
            values = (float(d_loss.detach()), float(g_loss.detach()))
            if not all(math.isfinite(v) for v in values):
                raise InvalidArgument("learning_rate", f"losses became {values} (D, G) at step {step}; "
                                      f"lower the learning rate (was {options.learning_rate}) or raise r1_gamma")
            sums = [sums[0] + values[0], sums[1] + values[1]]
            if step % log_every == 0 or step == options.steps:
                count = step - (len(losses) * log_every)
                d_curve.append(sums[0] / count)
                g_curve.append(sums[1] / count)
                losses.append(d_curve[-1] + g_curve[-1])
                sums = [0.0, 0.0]
                if progress is not None:
                    progress(TrainProgress(step=step, total=options.steps, loss=losses[-1]))
        D.requires_grad_(True)
        G.requires_grad_(True)
        G.eval()
        D.eval()
    return TrainResult(losses=losses, extra={
        "d_losses": d_curve, "g_losses": g_curve, "r1_last": r1_last, "log_every": log_every,
        "wall_time_s": time.perf_counter() - started,
    })
