"""Few-step sampling of a DDPM: sampler, number of passes and timestep spacing against quality.

    python bench/few_step_sampling.py                       # ddpm-digits; DDIM and DPM-Solver++ (2M) at 4-10 steps
    python bench/few_step_sampling.py --steps 4,5 --repeats 1 --spacings trailing

The same weights are measured with each spacing (``timestep_spacing`` in the DDPM config: "leading", genhub's
default, starts a k-step schedule at t = T - T/k; "trailing" starts at T - 1), each sampler and each number of
network passes, against the held-out split at the model's N (class-balanced for a conditional model), each figure
the mean of --repeats sample sets with half its 95% interval, as `genhub eval` measures them. The last two columns
are the classifier and random-feature FDs over the real-data floor's at the same N (issue #16: within 2x).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from hub.core import Hub
from hub.eval.classifier import load_classifier
from hub.eval.evaluate import balanced_labels, balanced_subset, draw_samples, image_set_scores

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ldm_guidance.py beside this script
from ldm_guidance import FIGURES, measured  # noqa: E402


def _mean(per_seed: list[dict[str, float]], name: str) -> float:
    return sum(scores[name] for scores in per_seed) / len(per_seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="genhub home (default: a temporary one with the bundled models)")
    parser.add_argument("--ref", default="ddpm-digits")
    parser.add_argument("--samplers", default="ddim,dpmpp-2m")
    parser.add_argument("--steps", default="4,5,6,10", help="comma-separated numbers of network passes")
    parser.add_argument("--spacings", default="leading,trailing")
    parser.add_argument("--reference", default="ddim:50:leading", help="sampler:steps:spacing of a first row")
    parser.add_argument("-n", "--num-samples", type=int, default=297, help="per sample set (the digits test split)")
    parser.add_argument("--repeats", type=int, default=3, help="sample sets per row (seeds 0, 1, ...)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    seeds = list(range(args.repeats))
    with tempfile.TemporaryDirectory() as tmp, Hub.open(home=args.home or tmp) as hub:
        version = hub.resolve(args.ref)
        if version.family != "ddpm":
            raise SystemExit(f"{version.ref} is a {version.family} model; this bench sets the DDPM config's timestep_spacing")
        config = dict(version.config)
        weights = hub.artifacts.get(version.artifact_digest)
        train, test = hub.dataset(version.dataset, "train"), hub.dataset(version.dataset, "test")
        classifier = load_classifier(version.dataset)
        classes = int(config.get("num_classes", 0))
        labels = balanced_labels(args.num_samples, classes) if classes else None
        real = [train.data[balanced_subset(train.labels, args.num_samples, classes, s)] if classes
                else train.data[torch.randperm(len(train), generator=torch.Generator().manual_seed(s))[:args.num_samples]]
                for s in seeds]
        floor = [image_set_scores(x, test, classifier, s, None) for s, x in zip(seeds, real)]
        print(f"{version.ref} on {version.dataset} (trained with spacing {config.get('timestep_spacing', 'leading')}): "
              f"{args.num_samples} samples per set, {len(seeds)} set(s){', class-balanced' if classes else ''}")
        header = f"{'spacing':<10}{'sampler':<10}{'passes':>7}" + "".join(f"{n:>16}" for n in FIGURES)
        print(header + f"{'x floor':>9}{'x rnd':>8}{'wall s':>8}")
        print(f"{'real data (floor)':<27}" + "".join(f"{measured(floor)[n]:>16}" for n in FIGURES))
        models = {}
        runs = [args.reference.split(":")] + [[sampler, steps, spacing] for spacing in args.spacings.split(",")
                                               for sampler in args.samplers.split(",") for steps in args.steps.split(",")]
        for sampler, steps, spacing in runs:
            if spacing not in models:  # the same weights under another spacing: a config change, no training
                _, models[spacing] = hub.build(version.family, {**config, "timestep_spacing": spacing})
                models[spacing].load_state_dict(weights)
            started, per_seed = time.perf_counter(), []
            for seed in seeds:
                samples = draw_samples(models[spacing], args.num_samples, seed=seed, sampler=sampler, steps=int(steps),
                                       labels=labels)
                per_seed.append(image_set_scores(samples, test, classifier, seed, labels))
            figures = measured(per_seed)
            ratios = _mean(per_seed, "fd") / _mean(floor, "fd"), _mean(per_seed, "fd_random") / _mean(floor, "fd_random")
            print(f"{spacing:<10}{sampler:<10}{steps:>7}" + "".join(f"{figures[n]:>16}" for n in FIGURES)
                  + f"{ratios[0]:>8.2f}x{ratios[1]:>7.2f}x{time.perf_counter() - started:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
