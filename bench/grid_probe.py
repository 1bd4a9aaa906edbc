"""How a GAN's samples on the 25-grid evolve over training: one row every few hundred steps.

    python bench/grid_probe.py stylegan --steps 3000 --lr 2e-3
    python bench/grid_probe.py stylegan --steps 3000 --lr 2e-3 --set d_lr_ratio=4 --set r1_gamma=0.01
    python bench/grid_probe.py ddgan --steps 12000 --lr 2e-3 --set data_scale=0.25 --every 2000

Trains like ``genhub train FAMILY -d gmm-grid25`` (same config defaults, ``--set`` overrides and seed) without
registering anything, and every ``--every`` steps samples the EMA generator as ``genhub eval`` does (n samples,
default sampler) and prints: modes covered, high-quality share, bridge share (off every mode but on a segment
joining two neighbours), the median distance to the nearest mode in mode std (high quality: <= 3; uniform
over the grid's box: about 16), the samples' spread (std of x and y; the data's is in the header) and share outside the grid's box,
the mean D + G loss since the last row (the split per tenth of the run at the end), and D's mean logit on real data and on fresh fakes (its gap says how
well D tells them apart; a D at chance has gap 0). For a ddgan D's logits are those of the last step (t = 1).
With ``--ot`` the generator is fitted without a discriminator instead: each step pairs its batch with a real batch
by an exact optimal assignment (minibatch optimal transport) and regresses each fake onto its real partner. That
says whether the generator can draw the 25 sharp modes at all, apart from whether the adversarial game gets it
there (D's columns then judge an untrained D). (Sliced Wasserstein with random directions is no such test: the
grid's projections on most directions are smooth, and a uniform square fits them nearly as well.)
What a generator that does badly does: collapse (few modes, small spread), spread (HQ low, bridges high), or drift
(samples off the grid).
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
from hub.model import TrainOptions, TrainProgress


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
        return float(model.D(real).mean()), float(model.D(fake).mean())


def fit_ot(model: torch.nn.Module, data: torch.Tensor, options: TrainOptions,
           progress: Callable[[TrainProgress], None]) -> None:
    """Train a stylegan/gan model's generator alone by minibatch optimal transport to ``data`` [N, 2]."""
    from scipy.optimize import linear_sum_assignment

    G = model.G.train()
    opt = torch.optim.Adam(G.parameters(), lr=options.learning_rate, betas=(0.0, 0.99))
    gen = torch.Generator().manual_seed(options.seed)
    torch.manual_seed(options.seed)
    for step in range(1, options.steps + 1):
        real = data[torch.randint(len(data), (options.batch_size,), generator=gen)]
        fake = G(torch.randn(options.batch_size, model.config.z_dim))
        rows, cols = linear_sum_assignment(torch.cdist(fake.detach(), real).pow(2).numpy())
        loss = (fake[torch.as_tensor(rows)] - real[torch.as_tensor(cols)]).pow(2).sum(dim=1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model._after_step()  # the EMA, as in adversarial training
        progress(TrainProgress(step=step, total=options.steps, loss=float(loss.detach())))


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
    parser.add_argument("--ot", action="store_true", help="fit the generator alone (minibatch optimal transport), no D")
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
        print(f"{'step':>6} {'modes':>5} {'HQ':>6} {'bridge':>6} {'med/std':>7} {'std x,y':>11} {'outside':>7} {'d+g loss':>8} "
              f"{'D real':>7} {'D fake':>7} {'gap':>6} {'s':>5}")
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
            print(f"{p.step:>6} {score.modes_covered:>5} {score.high_quality_share:>6.3f} {score.bridge_share:>6.3f} {med:>7.1f} "
                  f"{float(spread[0]):>5.2f},{float(spread[1]):>5.2f} {outside:>7.3f} "
                  f"{sum(losses) / len(losses):>8.3f} {lr:>7.2f} {lf:>7.2f} {lr - lf:>6.2f} "
                  f"{time.perf_counter() - started:>5.0f}", flush=True)
            losses.clear()

        options = TrainOptions(steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed)
        if args.ot:
            return fit_ot(model, train.data.float(), options, on_progress)
        result = model.train(train, options, on_progress)
        d, g = result.extra.get("d_losses", []), result.extra.get("g_losses", [])
        if d and g:
            k = max(1, len(d) // 10)
            print("d loss per tenth:", " ".join(f"{sum(d[i:i + k]) / len(d[i:i + k]):.3f}" for i in range(0, len(d), k)))
            print("g loss per tenth:", " ".join(f"{sum(g[i:i + k]) / len(g[i:i + k]):.3f}" for i in range(0, len(g), k)))


if __name__ == "__main__":
    main()
