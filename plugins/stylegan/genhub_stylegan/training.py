"""The adversarial training loop both GAN families share: non-saturating loss, optional lazy R1, optional
differentiable augmentation, an after-step hook (the EMA of the generator).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn

from hub.model import TrainOptions, TrainProgress, TrainResult
from hub.training import (GAN_HINT, LossLog, check_gan_options, discriminator_step, g_loss_nonsaturating, index_batches,
                          optimizer_step)

from genhub_stylegan.augment import diff_augment


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
    check_gan_options(options)
    G, D = setup.generator, setup.discriminator
    lazy = setup.r1_interval if setup.r1_gamma > 0 else 1
    opt_g = _adam(G.parameters(), options.learning_rate, setup.betas, 1)
    opt_d = _adam(D.parameters(), options.learning_rate * setup.d_lr_ratio, setup.betas, lazy)
    log = LossLog(options.steps, ("d", "g"), progress, GAN_HINT)
    r1_last = 0.0
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # seeded, without disturbing the caller's RNG
        torch.manual_seed(options.seed)
        batches = index_batches(data.shape[0], options.batch_size, torch.Generator().manual_seed(options.seed))
        G.train()
        D.train()
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
            d_loss, r1 = discriminator_step(opt_d, real_logits, D(diff_augment(fake, setup.augment)),
                                            real if do_r1 else None, setup.r1_gamma / 2 * setup.r1_interval)
            r1_last = r1_last if r1 is None else r1
            # -- generator
            G.requires_grad_(True)
            D.requires_grad_(False)
            g_loss = g_loss_nonsaturating(D(diff_augment(setup.generate(real.shape[0]), setup.augment)))
            optimizer_step(opt_g, g_loss)
            if setup.after_step is not None:
                setup.after_step()
            log.add(step, options.learning_rate, d=float(d_loss.detach()), g=float(g_loss.detach()))
        D.requires_grad_(True)
        G.requires_grad_(True)
        G.eval()
        D.eval()
    return TrainResult(losses=log.losses, extra={
        "d_losses": log.curves["d"], "g_losses": log.curves["g"], "r1_last": r1_last, "log_every": log.every,
        "wall_time_s": time.perf_counter() - started,
    })
