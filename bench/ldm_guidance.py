"""Classifier-free guidance against quality for a class-conditional image model (the bundled ldm-shapes by default).

    python bench/ldm_guidance.py                                  # ldm-shapes, guidance 1, 1.5, 2, 3
    python bench/ldm_guidance.py --home H --ref ldm6k --guidance 1.5,3 --repeats 3
    python bench/ldm_guidance.py --home H --ref ldm-shapes:1,ldm3k --guidance 3    # side by side, one floor

One row per guidance scale: FD, precision and recall against the held-out split (classifier and random features,
exactly as `genhub eval` measures them) and class agreement, each the mean of --repeats class-balanced sample
sets (seeds 0, 1, ...) with half its 95% interval. Above them, two reference rows at the same N: real data (the
floor, drawn class-balanced from the training split, as `genhub eval` draws it) and, for a latent model, its
autoencoder's reconstructions of those same images, the best FD any denoiser on that autoencoder can reach.
Guidance trades diversity for agreement with the condition: the table shows where that costs FD.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import torch

from hub.core import Hub
from hub.eval.classifier import load_classifier
from hub.eval.evaluate import balanced_labels, balanced_subset, draw_samples, image_set_scores
from hub.eval.metrics import interval

FIGURES = ("fd", "precision", "recall", "fd_random", "class_agreement")


def measured(per_seed: list[dict[str, float]]) -> dict[str, str]:
    """Figure -> "mean ± half-interval" (just the mean for one sample set)."""
    out = {}
    for name in FIGURES:
        values = [scores[name] for scores in per_seed if name in scores]
        if not values:
            out[name] = "-"
            continue
        spread = interval(values)
        digits = 4 if name == "fd_random" else (1 if name == "fd" else 3)
        half = (spread.high - spread.low) / 2
        out[name] = f"{spread.mean:.{digits}f}" + (f" ± {half:.{digits}f}" if len(values) > 1 else "")
    return out


def print_row(label: str, figures: dict[str, str], seconds: float | None) -> None:
    cells = "".join(f"{figures[name]:>16}" for name in FIGURES)
    print(f"{label:<28}{cells}{'' if seconds is None else f'{seconds:>9.0f}'}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="genhub home (default: a temporary one with the bundled models)")
    parser.add_argument("--ref", default="ldm-shapes", help="comma-separated refs on one dataset")
    parser.add_argument("--guidance", default="1,1.5,2,3", help="comma-separated guidance scales")
    parser.add_argument("-n", "--num-samples", type=int, default=480, help="per sample set (class-balanced)")
    parser.add_argument("--repeats", type=int, default=1, help="sample sets per row (seeds 0, 1, ...)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    scales = [float(g) for g in args.guidance.split(",") if g.strip()]
    seeds = list(range(args.repeats))
    with tempfile.TemporaryDirectory() as tmp, Hub.open(home=args.home or tmp) as hub:
        versions = [hub.resolve(ref.strip()) for ref in args.ref.split(",") if ref.strip()]
        version = versions[0]
        if len({v.dataset for v in versions}) > 1:
            raise SystemExit(f"--ref: {[v.ref for v in versions]} were trained on different datasets; compare one at a time")
        models = [hub.load(v.ref).model for v in versions]  # each loaded once
        model = models[0]
        train, test = hub.dataset(version.dataset, "train"), hub.dataset(version.dataset, "test")
        classes = model.capabilities.num_classes
        if classes < 1:
            raise SystemExit(f"{version.ref} is not class-conditional; guidance needs a conditional model")
        classifier = load_classifier(version.dataset)
        labels = balanced_labels(args.num_samples, classes)
        print(f"{', '.join(v.ref for v in versions)} on {version.dataset}: {args.num_samples} samples per set, "
              f"{len(seeds)} set(s), sampler {model.capabilities.resolved(None, None)}")
        print(f"{'':<28}" + "".join(f"{name:>16}" for name in FIGURES) + f"{'wall s':>9}")
        real = [train.data[balanced_subset(train.labels, args.num_samples, classes, seed)] for seed in seeds]
        print_row("real data (floor)", measured([image_set_scores(x, test, classifier, s, None)
                                                 for s, x in zip(seeds, real)]), None)
        autoencoder: Any = getattr(model, "vae", None)
        if callable(autoencoder):
            vae = autoencoder()
            print_row("its autoencoder's recon.", measured([image_set_scores(vae.reconstruct(x), test, classifier, s,
                                                                             None) for s, x in zip(seeds, real)]), None)
        for v, model in zip(versions, models):
            for scale in scales:
                started, per_seed = time.perf_counter(), []
                for seed in seeds:
                    samples = draw_samples(model, args.num_samples, seed=seed, sampler=None, steps=None, labels=labels,
                                           chunk=120, guidance_scale=scale)
                    per_seed.append(image_set_scores(samples, test, classifier, seed, labels))
                label = f"guidance {scale:g}" if len(versions) == 1 else f"{v.ref} guidance {scale:g}"
                print_row(label[:27], measured(per_seed), time.perf_counter() - started)


if __name__ == "__main__":
    main()
