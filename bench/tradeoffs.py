"""The seeds' claims, checked: every family on the grid of 25 Gaussians and on digits, side by side.

    python bench/tradeoffs.py --quick                 # a smoke run (about a minute; numbers meaningless)
    python bench/tradeoffs.py                         # short real budgets (tens of minutes on 2 CPU cores)
    python bench/tradeoffs.py --scale 4               # 4x the training steps
    python bench/tradeoffs.py --home ~/.local/share/genhub --load   # evaluate models already registered as
                                                      # <family>-<dataset> (bundled or trained) instead of training
    python bench/tradeoffs.py --bundled               # evaluate the checkpoints the plugins ship (no training)

Trains (or loads) ``ddpm``, ``gan``, ``stylegan``, ``ddgan`` and ``distill`` (a 1-step student of the DDPM
just trained) on ``gmm-grid25`` and ``digits``, evaluates each with ``hub.eval`` (recorded in a registry,
a temporary one by default) and prints one table: modes covered, high-quality share, Fréchet distance,
precision/recall, images per second. The diffusion model is also measured with few-step and ancestral
samplers. Expected shape (the seeds' claims): the plain GAN collapses to a few modes; diffusion and the
hybrid cover all 25; the GANs are the fastest. The table reports whatever comes out.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import torch

from hub.core import Hub
from hub.devices import hardware_description
from hub.errors import GenhubError
from hub.eval.evaluate import EvalOptions
from hub.eval.summary import latest
from hub.model import TrainOptions

FAMILIES = ("ddpm", "gan", "stylegan", "ddgan", "distill")
DATASETS = ("gmm-grid25", "digits")


@dataclass(frozen=True)
class Recipe:
    steps: int
    batch_size: int
    lr: float
    config: dict[str, Any]


# Short budgets sized for a 2-core CPU: a few minutes of training each at scale 1 (more on a loaded machine).
# Every model is unconditional (num_classes=0 where a family would condition on the labels by default), as in
# the mode-collapse literature; the DDPM on points gets a wider MLP, without which 4,000 steps stay blurry.
RECIPES: dict[tuple[str, str], Recipe] = {
    ("ddpm", "gmm-grid25"): Recipe(4000, 256, 1e-3, {"num_classes": 0, "base_channels": 256, "num_res_blocks": 2}),
    ("gan", "gmm-grid25"): Recipe(4000, 256, 1e-3, {}),
    ("stylegan", "gmm-grid25"): Recipe(4000, 256, 1e-3, {}),
    ("ddgan", "gmm-grid25"): Recipe(4000, 256, 1e-3, {}),
    ("distill", "gmm-grid25"): Recipe(2000, 256, 1e-3, {"num_pairs": 4096}),
    ("ddpm", "digits"): Recipe(2000, 64, 1e-3, {"num_classes": 0}),
    ("gan", "digits"): Recipe(2000, 64, 2e-4, {}),
    ("stylegan", "digits"): Recipe(2000, 64, 1e-3, {}),
    ("ddgan", "digits"): Recipe(2000, 64, 2e-4, {}),
    ("distill", "digits"): Recipe(1000, 64, 2e-4, {}),
}
QUICK_CONFIG = {"distill": {"num_pairs": 128, "teacher_steps": 4}}  # --quick: no long teacher sampling
# Extra sampler settings measured for the diffusion model, beside its default (DDIM, 50 steps): few-step DDIM,
# and on points the 1,000-step ancestral sampler (too slow for 1,000 images on a CPU).
# --bundled: the shipped checkpoint of each family trained on one of these datasets stands for the column
BUNDLED_DATASETS = {"digits": ("digits", "digits16"), "gmm-grid25": ("gmm-grid25",)}
DDPM_EXTRA = {"gmm-grid25": (("ddim", 4), ("ddpm", 1000)), "digits": (("ddim", 4),)}


def _train(hub: Hub, family: str, dataset: str, recipe: Recipe, scale: float, seed: int, teacher: str | None,
           quick: bool) -> tuple[str, float]:
    config = {**recipe.config, **(QUICK_CONFIG.get(family, {}) if quick else {})}
    if family == "distill" and teacher is None:
        raise GenhubError("distill needs the DDPM of the same dataset; keep ddpm in --families")
    steps = max(1, int(recipe.steps * scale))
    started = time.perf_counter()
    # distill: the DDPM is its teacher, pinned and recorded as lineage through `parent`
    version = hub.train(family, dataset, model_name=f"bench-{family}-{dataset}", config_overrides=config,
                        parent=teacher if family == "distill" else None,
                        options=TrainOptions(steps=steps, batch_size=recipe.batch_size, learning_rate=recipe.lr, seed=seed),
                        command=f"python bench/tradeoffs.py ({family} on {dataset}, {steps} steps)")
    return version.ref, time.perf_counter() - started


def bundled_ref(hub: Hub, family: str, dataset: str) -> str | None:
    """The newest bundled ("pretrained") version of ``family`` trained on ``dataset`` (or its variant), if any."""
    found = None
    models, token = hub.registry.list_models(page_size=1000)
    while True:
        for model in models:
            if model.family != family or model.latest_version is None:
                continue
            version = hub.resolve(model.name)
            if "pretrained" in version.tags and version.dataset in BUNDLED_DATASETS.get(dataset, (dataset,)):
                found = version.ref if found is None or version.created_at > hub.resolve(found).created_at else found
        if not token:
            return found
        models, token = hub.registry.list_models(page_size=1000, page_token=token)


def _row(hub: Hub, ref: str, dataset: str, train_s: float | None, options: EvalOptions) -> dict[str, Any]:
    started = time.perf_counter()
    records = hub.evaluate(ref, options)
    figures = latest(records)
    version = hub.resolve(ref)
    first = records[0]

    def value(name: str) -> float | None:
        return figures[name].value if name in figures else None

    return {
        "dataset": dataset, "model": ref, "family": version.family,
        "sampling": f"{first.sampler or version.family} {first.steps or ''}".strip(),
        "train_s": train_s, "eval_s": time.perf_counter() - started,
        "modes": value("modes_covered"), "hq": value("high_quality_share"), "fd": value("fd"),
        "precision": value("precision"), "recall": value("recall"),
        "ips1": value("images_per_s_batch1"), "ipsmax": value("images_per_s_batchmax"),
        "p50": value("latency_p50_ms_batch1"),
        "floor": value("fd_floor") if value("fd_floor") is not None else value("modes_covered_floor"),
    }


def _fmt(value: float | None, spec: str) -> str:
    width = int(spec.split(".")[0])
    return "-".rjust(width) if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]], hardware: str) -> None:
    header = (f"{'dataset':<11} {'model':<28} {'sampling':<12} {'train s':>8} {'modes':>6} {'HQ share':>8} {'FD':>8} "
              f"{'P':>5} {'R':>5} {'img/s b1':>9} {'img/s b64':>10} {'p50 ms':>8}")
    print(f"\nTrade-offs on {hardware} (floor, real test data: " +
          ", ".join(sorted({f"{r['dataset']} {r['floor']:.4g}" for r in rows if r['floor'] is not None})) + ")")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['dataset']:<11} {r['model']:<28} {r['sampling']:<12} {_fmt(r['train_s'], '8.0f')} "
              f"{_fmt(r['modes'], '6.0f')} {_fmt(r['hq'], '8.3f')} {_fmt(r['fd'], '8.1f')} {_fmt(r['precision'], '5.2f')} "
              f"{_fmt(r['recall'], '5.2f')} {_fmt(r['ips1'], '9.1f')} {_fmt(r['ipsmax'], '10.1f')} {_fmt(r['p50'], '8.1f')}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budgets and sample counts: a smoke run")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every recipe's training steps")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--home", help="genhub home to use (default: a temporary one)")
    parser.add_argument("--load", action="store_true", help="evaluate registered <family>-<dataset> models, no training")
    parser.add_argument("--bundled", action="store_true", help="evaluate the bundled checkpoints, no training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    scale = 0.01 if args.quick else args.scale
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, Hub.open(home=args.home or tmp) as hub:
        for dataset in datasets:
            n = (300 if dataset.startswith("gmm") else 200) if args.quick else None
            options = EvalOptions(num_samples=n, speed_budget_s=0.2 if args.quick else 3.0, floor=True)
            teacher = None
            for family in families:
                if args.bundled:
                    found = bundled_ref(hub, family, dataset)
                    if found is None:
                        print(f"no bundled {family} model on {dataset}; skipped", file=sys.stderr, flush=True)
                        continue
                    ref, train_s = found, None
                elif args.load:
                    ref, train_s = f"{family}-{dataset}", None
                else:
                    print(f"training {family} on {dataset} ...", file=sys.stderr, flush=True)
                    ref, train_s = _train(hub, family, dataset, RECIPES[(family, dataset)], scale, args.seed,
                                          teacher, args.quick)
                if family == "ddpm":
                    teacher = hub.resolve(ref).ref
                print(f"evaluating {ref} ...", file=sys.stderr, flush=True)
                rows.append(_row(hub, ref, dataset, train_s, options))
                if family == "ddpm":
                    for sampler, steps in DDPM_EXTRA.get(dataset, ()):
                        if args.quick and steps > 100:
                            continue
                        extra = EvalOptions(num_samples=options.num_samples, sampler=sampler, steps=steps, floor=False,
                                            speed_budget_s=options.speed_budget_s)
                        rows.append(_row(hub, ref, dataset, None, extra))
            print_table(rows, hardware_description())  # after each dataset: partial results survive a long run
    return rows


if __name__ == "__main__":
    main()
