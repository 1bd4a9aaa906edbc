"""Where a few-step DDGAN on the 25-grid makes its choices, and where its bridges come from: one row per step.

    python bench/ddgan_steps.py                      # the bundled ddgan-grid25
    python bench/ddgan_steps.py --home H --ref ddgan-grid25:2

For each step t (T..1) of the chain a model samples, x_t is taken from that chain and the generator's x_0
prediction G(x_t, t, z) is drawn for many latents z at the same x_t. The row says how far the predictions spread
over z, how many distinct modes they reach from one x_t, and what share lands within 3 std of a mode; beside it,
the schedule: the signal sqrt(alpha-bar_{t-1}), the noise of level t - 1, and the posterior std the step adds (in
the model's units, data / data_scale; the spread is in data units).
A step whose predictions reach several modes from one x_t is a choice made by z; where the posterior adds no
noise (t = 1) the generator alone must make it, and a continuous map from z joins the modes it chooses between.
"""

from __future__ import annotations

import argparse
import math
import tempfile

import torch

from hub.core import Hub
from hub.eval.mixture import HIGH_QUALITY_STDS, mixture_score


def step_rows(model: torch.nn.Module, centres: torch.Tensor, std: float, n: int, latents: int,
              seed: int) -> tuple[list[dict[str, float]], torch.Tensor]:
    """Per-step figures (T first) and the chain's final samples [n, 2]; ``model`` is a loaded DDGANModel."""
    proc, z_dim, steps, scale = model.process, model.config.z_dim, model.config.num_steps, model.config.data_scale
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    def latent(rows: int) -> torch.Tensor | None:
        return randn(rows, z_dim) if z_dim else None

    x, rows = randn(n, 2), []
    with torch.no_grad():
        for t in range(steps, 0, -1):
            tt = torch.full((n,), t)
            preds = torch.stack([model.G_ema(x, tt, latent(n)) for _ in range(latents)]) * scale  # [L, n, 2], data units
            nearest = torch.cdist(preds.reshape(-1, 2), centres).min(dim=1)
            good = (nearest.values < HIGH_QUALITY_STDS * std).reshape(latents, n)
            modes = nearest.indices.reshape(latents, n)
            reached = [len(set(modes[:, i][good[:, i]].tolist())) for i in range(n)]
            abar_prev = float(proc.alphas_cumprod[t - 1])
            rows.append({"t": t, "signal": math.sqrt(abar_prev), "noise": math.sqrt(1 - abar_prev),
                         "posterior_std": math.sqrt(float(proc.posterior_var[t])),
                         "spread": float(preds.std(dim=0).norm(dim=1).mean()), "hq": float(good.float().mean()),
                         "modes": sum(reached) / n})
            x0 = model.G_ema(x, tt, latent(n))
            x = proc.posterior_sample(x0, x, tt, randn(n, 2) if t > 1 else None)
    return rows, x * scale


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="genhub home (default: a temporary one with the bundled models)")
    parser.add_argument("--ref", default="ddgan-grid25")
    parser.add_argument("-n", type=int, default=500, help="chains (x_t per step)")
    parser.add_argument("--latents", type=int, default=32, help="latents z drawn per x_t")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp, Hub.open(home=args.home or tmp) as hub:
        version = hub.resolve(args.ref)
        if version.family != "ddgan":
            raise SystemExit(f"{version.ref} is a {version.family} model; this looks inside a ddgan's steps")
        mixture = hub.mixture(version.dataset)
        if mixture is None:
            raise SystemExit(f"{version.dataset} is not a 2D mixture; use a ddgan trained on gmm-grid25")
        centres, std = torch.tensor(mixture[0], dtype=torch.float32), float(mixture[1])
        rows, final = step_rows(hub.load(version.ref).model, centres, std, args.n, args.latents, args.seed)
        score = mixture_score(final, mixture[0], std)
    print(f"{version.ref}: {args.n} chains, {args.latents} latents per x_t; the chain's samples: "
          f"{score.modes_covered}/25 modes, HQ {score.high_quality_share:.3f}, bridges {score.bridge_share:.3f}")
    print(f"{'t':>2} {'signal':>6} {'noise':>6} {'post std':>8} {'x0 spread over z':>16} {'modes per x_t':>13} "
          f"{'HQ of x0':>8}")
    for r in rows:
        print(f"{r['t']:>2} {r['signal']:>6.3f} {r['noise']:>6.3f} {r['posterior_std']:>8.3f} {r['spread']:>16.3f} "
              f"{r['modes']:>13.2f} {r['hq']:>8.3f}")


if __name__ == "__main__":
    main()
