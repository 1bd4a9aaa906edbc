"""How a GAN's samples on the 25-grid evolve over training: one row every few hundred steps.

    python bench/grid_probe.py stylegan --steps 3000 --lr 2e-3
    python bench/grid_probe.py stylegan --steps 3000 --lr 2e-3 --set d_lr_ratio=4 --set r1_gamma=0.01
    python bench/grid_probe.py ddgan --steps 12000 --lr 2e-3 --set data_scale=0.25 --every 2000
    python bench/grid_probe.py stylegan --direct --set mapping_lr_mul=1   # G alone, no D: a capacity check
    python bench/grid_probe.py stylegan --staircase --set mapping_lr_mul=1 --set g_fourier_octaves=6  # a stricter one

Trains like ``genhub train FAMILY -d gmm-grid25`` (same config defaults, ``--set`` overrides and seed) without
registering anything, and every ``--every`` steps samples the EMA generator as ``genhub eval`` does (n samples,
default sampler) and prints: modes covered, high-quality share, bridge share (off every mode but on a segment
joining two neighbours), the median distance to the nearest mode in mode std (high quality: <= 3; uniform over
the grid's box: about 16), the samples' spread (std of x and y; the data's is in the header) and share outside
the grid's box, the mean D + G loss since the last row (the split per tenth of the run at the end), and D's mean
logit on real data and on fresh fakes (its gap says how well D tells them apart; at chance it is 0). For a ddgan,
D's logits are those of the last step (t = 1). For a stylegan, the last columns are modes and HQ when every sample
draws its own noise inputs (as in training; sampling uses the stored maps by default) and the noise strengths'
total: equal figures and a small strength mean G does not carry its mode choices in the noise. What a generator
that does badly does: collapse (few modes, small spread), spread (HQ low, bridges high, median distance near a
uniform's), or drift (samples off the grid).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from typing import Callable

import torch

from hub.core import Hub
from hub.eval.evaluate import draw_samples
from hub.eval.mixture import mixture_score
from hub.model import SampleRequest, TrainOptions, TrainProgress, per_sample_seeds


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def d_logits(model: torch.nn.Module, family: str, real: torch.Tensor, fake: torch.Tensor) -> tuple[float, float]:
    """D's mean logit on real and on fake samples (data units); a ddgan's D judges the step t = 1 pair."""
    with torch.no_grad():
        if family == "ddgan":
            scale, proc = model.config.data_scale, model.process
            t = torch.ones(len(real), dtype=torch.long)
            pairs = []
            for x0 in (real / scale, fake / scale):
                x_prev, x_t = proc.q_sample_pair(x0, t, torch.randn_like(x0), torch.randn_like(x0))
                pairs.append(float(model.D(x_prev, x_t, t).mean()))
            return pairs[0], pairs[1]
        k = getattr(model.D, "pack", 1)  # a packing D takes a multiple of its pack
        return float(model.D(real[:len(real) // k * k]).mean()), float(model.D(fake[:len(fake) // k * k]).mean())


def random_noise_score(model: torch.nn.Module, n: int, centres: list, std: float) -> str:
    """A StyleGAN's modes/HQ with per-sample random noise inputs (as in training) instead of the stored maps (as
    sampled by default), and the noise strengths' total: does G carry mode choices in its noise?"""
    if not hasattr(model, "G_ema"):
        return ""
    request = SampleRequest(seeds=per_sample_seeds(0, n), params={"noise_mode": "random"})
    with torch.no_grad():
        score = mixture_score(model.sample(request), centres, std)
        strength = sum(float(layer.noise_strength.abs()) for layer in model.G_ema.synthesis.layers)
    return f" {score.modes_covered:>3}/{score.high_quality_share:.3f} {strength:>5.2f}"


def train_direct(model: torch.nn.Module, data: torch.Tensor, options: TrainOptions,
                 progress: Callable[[TrainProgress], None], projections: int = 64) -> None:
    """A capacity check without a discriminator: the generator alone (a stylegan's EMA updated as in training)
    fitted to the data by the sliced Wasserstein distance, sorted 1D projections of a fake and a real batch
    matched. If this covers the modes sharply, the network can draw them and the adversarial game is what fails."""
    opt = torch.optim.Adam(model.G.parameters(), lr=options.learning_rate, betas=(0.0, 0.99))
    gen = torch.Generator().manual_seed(options.seed)
    torch.manual_seed(options.seed)
    model.G.train()
    for step in range(1, options.steps + 1):
        real = data[torch.randint(len(data), (options.batch_size,), generator=gen)].float()
        fake = model._fakes(options.batch_size)
        dirs = torch.nn.functional.normalize(torch.randn(real.shape[1], projections, generator=gen), dim=0)
        loss = ((fake @ dirs).sort(dim=0).values - (real @ dirs).sort(dim=0).values).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if hasattr(model, "_after_step"):
            model._after_step()
        progress(TrainProgress(step, options.steps, float(loss.detach())))
    model.G.eval()


def train_staircase(model: torch.nn.Module, centres: list, options: TrainOptions,
                    progress: Callable[[TrainProgress], None]) -> None:
    """A stricter capacity check for a stylegan: the generator alone regresses a fixed z -> mode map (the N(0, 1)
    quintiles of the normalised z's first two coordinates pick the grid's column and row, 1/25 of z each) by MSE.
    The map is the staircase a generator must draw; an MLP must make its steps sharp to put samples within 3 std."""
    grid = torch.tensor(centres, dtype=torch.float32)
    xs, ys = grid[:, 0].unique(), grid[:, 1].unique()
    edges = torch.distributions.Normal(0.0, 1.0).icdf(torch.arange(1, len(xs)) / len(xs))
    opt = torch.optim.Adam(model.G.parameters(), lr=options.learning_rate, betas=(0.0, 0.99))
    torch.manual_seed(options.seed)
    model.G.train()
    for step in range(1, options.steps + 1):
        z = torch.randn(options.batch_size, model.config.z_dim)
        zn = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)  # what the mapping network sees
        target = torch.stack([xs[torch.bucketize(zn[:, 0].contiguous(), edges)],
                              ys[torch.bucketize(zn[:, 1].contiguous(), edges)]], dim=1)
        loss = (model.G(z) - target).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model._after_step()
        progress(TrainProgress(step, options.steps, float(loss.detach())))
    model.G.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", help="stylegan, gan or ddgan")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--every", type=int, default=500, help="steps between rows")
    parser.add_argument("-n", type=int, default=2500, help="samples per row")
    parser.add_argument("--dataset", default="gmm-grid25")
    parser.add_argument("--direct", action="store_true", help="no D: fit G alone by the sliced Wasserstein distance "
                                                                "(loss column: SWD; D columns: the untrained D's)")
    parser.add_argument("--staircase", action="store_true", help="stylegan, no D: G alone regresses a fixed z -> mode "
                                                                   "map by MSE (loss column: MSE), a stricter capacity check")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    overrides = {k: _value(v) for k, v in (item.split("=", 1) for item in args.overrides)}
    with tempfile.TemporaryDirectory() as tmp, Hub.open(home=tmp) as hub:
        family = hub.parts.family(args.family)
        train = hub.dataset(args.dataset, "train")
        config = family.default_config(train).replace(**overrides)
        model = family.build(config, hub.context())
        centres, std = hub.mixture(args.dataset)  # type: ignore[misc]
        box = float(torch.tensor(centres).abs().max()) + 3 * std
        real = train.data[torch.randperm(len(train.data), generator=torch.Generator().manual_seed(1))[:args.n]].float()
        print(f"{args.family} on {args.dataset}: {args.steps} steps, batch {args.batch_size}, lr {args.lr}, "
              f"seed {args.seed}, overrides {overrides}; data std x,y "
              f"{float(real.std(dim=0)[0]):.2f},{float(real.std(dim=0)[1]):.2f}, mode std {std}")
        print(f"{'step':>6} {'modes':>5} {'HQ':>6} {'bridge':>6} {'med/std':>7} {'std x,y':>11} {'outside':>7} "
              f"{'d+g loss':>8} {'D real':>7} {'D fake':>7} {'gap':>6} {'s':>5}"
              + (" rnd-noise modes/HQ, strength" if args.family == "stylegan" else ""))
        losses: list[float] = []
        started = time.perf_counter()

        def on_progress(p: TrainProgress) -> None:
            losses.append(p.loss)
            if p.step % args.every and p.step != p.total:
                return
            model.G.eval()
            samples = draw_samples(model, args.n, seed=0, sampler=None, steps=None)
            model.G.train()
            score = mixture_score(samples, centres, std)
            lr, lf = d_logits(model, args.family, real, samples)
            spread = samples.std(dim=0)
            med = float(torch.cdist(samples, torch.tensor(centres)).min(dim=1).values.median()) / std
            outside = float((samples.abs().max(dim=1).values > box).float().mean())
            print(f"{p.step:>6} {score.modes_covered:>5} {score.high_quality_share:>6.3f} {score.bridge_share:>6.3f} "
                  f"{med:>7.1f} {float(spread[0]):>5.2f},{float(spread[1]):>5.2f} {outside:>7.3f} "
                  f"{sum(losses) / len(losses):>8.3f} {lr:>7.2f} {lf:>7.2f} {lr - lf:>6.2f} "
                  f"{time.perf_counter() - started:>5.0f}" + random_noise_score(model, args.n, centres, std), flush=True)
            losses.clear()

        options = TrainOptions(steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed)
        if args.direct:
            train_direct(model, train.data, options, on_progress)
            return
        if args.staircase:
            train_staircase(model, centres, options, on_progress)
            return
        result = model.train(train, options, on_progress)
        d, g = result.extra.get("d_losses", []), result.extra.get("g_losses", [])
        if d and g:
            k = max(1, len(d) // 10)
            for name, curve in (("d", d), ("g", g)):
                tenths = (curve[i:i + k] for i in range(0, len(curve), k))
                print(f"{name} loss per tenth:", " ".join(f"{sum(t) / len(t):.3f}" for t in tenths))


if __name__ == "__main__":
    main()
