"""``genhub eval``: measure a registered version's quality and speed and record the figures in the registry.

Metric names (one registry row each; ``data`` says what the samples were compared against):

- points (2D mixtures, ``hub.eval.mixture``): ``modes_covered``, ``high_quality_share``, ``mode_kl``; with
  ``data`` = the dataset (its true centres and std). Conditional models add ``class_agreement`` (share of
  samples nearest to the requested mode).
- images, against the **held-out** split (``data`` = ``<dataset>:test``), so copying training images earns nothing:
  ``fd``, ``precision``, ``recall`` (k = 3) in the features of the shipped classifier (``hub.eval.classifier``,
  fit on the training split; its name and sha256 in ``details``), and ``fd_random``, ``precision_random``,
  ``recall_random`` in seeded random conv features fit on no data (``hub.eval.features``). Conditional models
  add ``class_agreement`` (share the classifier assigns to the requested class). Memorisation, in pixels
  (``data`` = ``<dataset>:train``): ``nn_ratio`` (median distance of samples to their nearest training image
  over the same for held-out images) and ``copy_share`` (samples nearer a training image than the closest 5% of
  held-out images are).
- every quality figure is the mean over ``repeats`` independent sample sets (seeds ``seed``, ``seed + 1``, ...);
  ``details`` keep ``per_seed``, ``std`` and ``ci95`` (a Student t interval of the mean).
- the floor, the same figures for real data at the model's N: ``<name>_floor`` rows. Points: held-out points
  against the true mixture (``data`` = ``<dataset>:test``). Images: a random part of the training split,
  never seen by the reference, against the held-out split (``data`` = ``<dataset>:train``), i.e. what a model
  drawing fresh images from the data distribution scores; class agreement of held-out images. They describe
  the dataset, and are recorded beside every evaluation so a card or table can show "model vs real data".
- speed (``hub.eval.speed``): ``latency_p50_ms_batch1``, ``latency_p99_ms_batch1``, ``images_per_s_batch1``
  and the same with ``_batchmax`` (``details.batch`` says which batch, by default 64).

Every row records the number of samples, the hardware, the sampler and steps (resolved to the model's
defaults where it says them), the seed, and the time (the row's ``created_at``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from hub.datasets import Dataset
from hub.devices import hardware_description
from hub.errors import InvalidArgument
from hub.eval.classifier import FeatureClassifier, load_classifier
from hub.eval.features import RandomFeatures, random_features
from hub.eval.metrics import (
    Gaussian,
    class_agreement,
    frechet_distance_gaussians,
    interval,
    memorisation,
    precision_recall,
)
from hub.eval.mixture import mixture_score, mode_agreement
from hub.eval.speed import MAX_BATCH, measure_speed
from hub.model import GenerativeModel, SampleRequest, per_sample_seeds
from hub.registry.records import MetricRecord, VersionRecord

if TYPE_CHECKING:
    from hub.core import Hub

# Samples per evaluation: 2,500 points (the mode-collapse literature's count); for images, as many as the
# held-out split has (digits 297, shapes 1,200), so the model and its floor are measured at the same N: the
# Fréchet distance falls with N (its bias is O(1/N); 297 real digits score about 21 against the training set).
POINT_SAMPLES = 2500
PR_K = 3  # Kynkäänniemi et al.'s k
COPY_QUANTILE = 0.05  # memorisation: "closer to a training image than the closest 5% of held-out images"
QUALITY_NAMES = ("modes_covered", "high_quality_share", "mode_kl", "fd", "precision", "recall", "class_agreement")
SPEED_NAMES = ("latency_p50_ms_batch1", "latency_p99_ms_batch1", "images_per_s_batch1",
               "latency_p50_ms_batchmax", "latency_p99_ms_batchmax", "images_per_s_batchmax")


@dataclass
class EvalOptions:
    num_samples: int | None = None  # None: 2,500 points, or as many images as the test split holds
    sampler: str | None = None  # None: the model's default
    steps: int | None = None  # None: the model's default
    seed: int = 0
    chunk: int = 250  # samples per sampling call
    quality: bool = True
    floor: bool = True
    speed: bool = True
    max_batch: int = MAX_BATCH
    speed_budget_s: float = 5.0  # timing per batch size, after one warm-up call
    min_repeats: int = 3  # speed: timed calls per batch size at least
    repeats: int = 3  # quality: independent sample sets (seeds seed, seed + 1, ...); figures are their mean


@dataclass
class _Row:
    name: str
    value: float
    data: str
    num_samples: int
    details: dict[str, Any]
    sampled: bool = True  # False: real data (the floor), recorded without sampler and steps


def is_conditional(model: GenerativeModel, version: VersionRecord) -> bool:
    """Class-conditional models say so in their capabilities (``num_classes``)."""
    return model.capabilities.num_classes > 0


def resolved_sampling(model: GenerativeModel, sampler: str | None, steps: int | None) -> tuple[str | None, int | None]:
    """The sampler and steps a request with these settings runs, as far as the model's capabilities say."""
    return model.capabilities.resolved(sampler, steps)


def draw_samples(model: GenerativeModel, num_samples: int, *, seed: int, sampler: str | None, steps: int | None,
                 labels: list[int] | None = None, chunk: int = 250, guidance_scale: float | None = None) -> torch.Tensor:
    """``num_samples`` samples in chunks; sample i depends only on (seed, i), whatever the chunk size.
    ``guidance_scale``: None keeps the model's default (conditioned requests only)."""
    seeds = per_sample_seeds(seed, num_samples)
    parts = []
    with torch.no_grad():
        for start in range(0, num_samples, chunk):
            request = SampleRequest(seeds=seeds[start:start + chunk], sampler=sampler, steps=steps,
                                    class_labels=labels[start:start + chunk] if labels is not None else None,
                                    guidance_scale=guidance_scale)
            parts.append(model.sample(request).detach().float().cpu())
    samples = torch.cat(parts)
    if not torch.isfinite(samples).all():
        raise InvalidArgument("model", "sampling produced NaN or infinite values; the weights are broken or the "
                              "sampler/steps do not suit this model")
    return samples


def balanced_labels(num_samples: int, num_classes: int) -> list[int]:
    """0, 1, ..., K-1, 0, 1, ...: every class requested equally often."""
    return [i % num_classes for i in range(num_samples)]


def balanced_subset(labels: torch.Tensor, num_samples: int, num_classes: int, seed: int) -> torch.Tensor:
    """Indices of ``num_samples`` items, per class as many as ``balanced_labels`` requests, each class's drawn at
    random: the real-data counterpart of a conditional model's sample set. A plain random subset's class counts
    vary (about +-3 of 10 per class at 480 shapes), and in classifier features that alone more than doubles FD."""
    wanted = torch.bincount(torch.tensor(balanced_labels(num_samples, num_classes)), minlength=num_classes)
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(num_classes):
        have = (labels == c).nonzero().squeeze(1)
        if len(have) < int(wanted[c]):
            raise InvalidArgument("num_samples", f"a class-balanced floor of {num_samples} needs {int(wanted[c])} "
                                  f"items of class {c}, the split has {len(have)}; use fewer samples")
        picks.append(have[torch.randperm(len(have), generator=gen)[:int(wanted[c])]])
    return torch.cat(picks)


# -- points --------------------------------------------------------------------------------------------------

def mixture_of(dataset: Dataset) -> tuple[list[list[float]], float]:
    centres, std = dataset.meta.get("centres"), dataset.meta.get("std")
    if centres is None or std is None:
        raise InvalidArgument("dataset", f"{dataset.name!r} has no mixture centres and std in its meta; point metrics "
                              "need them (meta={'centres': [[x, y], ...], 'std': s})")
    return centres, float(std)


def point_scores(samples: torch.Tensor, dataset: Dataset) -> tuple[dict[str, float], dict[str, Any]]:
    """Modes covered, high-quality share and mode KL of points [N, 2] against the dataset's true mixture."""
    centres, std = mixture_of(dataset)
    score = mixture_score(samples, centres, std)
    return ({"modes_covered": score.modes_covered, "high_quality_share": score.high_quality_share,
             "mode_kl": score.mode_kl}, score.details())


# -- images --------------------------------------------------------------------------------------------------

_reference_cache: dict[tuple[str, str, str], tuple[torch.Tensor, Gaussian]] = {}


def reference_features(dataset: Dataset, extractor: FeatureClassifier | RandomFeatures) -> tuple[torch.Tensor, Gaussian]:
    """Features of a real split and their Gaussian; cached per (dataset, split, extractor digest)."""
    key = (dataset.name, dataset.split, extractor.digest)
    if key not in _reference_cache:
        feats = extractor.features(dataset.data) if isinstance(extractor, FeatureClassifier) else extractor(dataset.data)
        _reference_cache[key] = (feats, Gaussian.fit(feats))
    return _reference_cache[key]


def _subset(features: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """A fixed random subset of n rows (all of them when there are no more than n)."""
    if n >= len(features):
        return features
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))
    return features[order[:n]]


def image_scores(features: torch.Tensor, ref_feats: torch.Tensor, ref_gauss: Gaussian, seed: int) -> dict[str, float]:
    """FD against the whole reference split; precision and recall against an equal-sized part of it."""
    pr = precision_recall(_subset(ref_feats, len(features), seed), features, k=PR_K)
    return {"fd": frechet_distance_gaussians(Gaussian.fit(features), ref_gauss),
            "precision": pr.precision, "recall": pr.recall}


def image_set_scores(images: torch.Tensor, test: Dataset, classifier: FeatureClassifier, seed: int,
                      labels: list[int] | None) -> dict[str, float]:
    """Every image figure of one sample set against the held-out split, in both feature spaces."""
    feats, logits = classifier.features_and_logits(images)
    scores = image_scores(feats, *reference_features(test, classifier), seed)
    randoms = random_features(images.shape[1])
    scores.update({f"{k}_random": v for k, v in image_scores(randoms(images), *reference_features(test, randoms),
                                                              seed).items()})
    if labels is not None:
        scores["class_agreement"] = class_agreement(logits, torch.tensor(labels))
    return scores


def _image_details(dataset: Dataset, test: Dataset, classifier: FeatureClassifier) -> dict[str, dict[str, Any]]:
    """Per figure: which feature space and reference it was measured in."""
    reference = {"reference": f"{test.name}:test", "reference_size": len(test), "pr_k": PR_K}
    fitted = {**classifier.describe(), **reference, "features": "classifier",
              "features_fit_on": f"{dataset.name}:train (the split the models learn from)"}
    randoms = {**random_features(dataset.sample_shape[0]).describe(), **reference, "features_fit_on": "nothing"}
    out = {name: fitted for name in ("fd", "precision", "recall", "class_agreement")}
    out.update({f"{name}_random": randoms for name in ("fd", "precision", "recall")})
    return out


def _memorisation_rows(samples: torch.Tensor, train: Dataset, test: Dataset, data: str) -> list[_Row]:
    """Distance to the nearest training image (pixels) against held-out images' (``hub.eval.metrics.memorisation``)."""
    memo = memorisation(samples.flatten(1), train.data.flatten(1), test.data.flatten(1), quantile=COPY_QUANTILE)
    details = {"space": "pixels", "reference": f"{train.name}:train", "heldout": f"{test.name}:test",
               "quantile": memo.quantile, "definition": "nn_ratio: median nearest-training distance of samples over "
               "that of held-out images (about 1: generalises; near 0: copies); copy_share: samples closer to a "
               "training image than the closest 5% of held-out images are (about 0.05 for new real data)"}
    return [_Row("nn_ratio", memo.nn_ratio, data, len(samples), details),
            _Row("copy_share", memo.copy_share, data, len(samples), details)]


def _aggregate(per_seed: list[dict[str, float]], data: str, n: int, details: dict[str, dict[str, Any]]) -> list[_Row]:
    """One row per figure: the mean over the sample sets, with the per-seed values and a 95% interval in details."""
    rows = []
    for name in per_seed[0]:
        spread = interval([scores[name] for scores in per_seed])
        rows.append(_Row(name, spread.mean, data, n, {**details.get(name, {}), **spread.details()}))
    return rows


# -- the whole evaluation -------------------------------------------------------------------------------------

def _seeds(opts: EvalOptions) -> list[int]:
    return [opts.seed + r for r in range(opts.repeats)]


def floor_rows(hub: Hub, dataset_name: str, num_samples: int, seeds: list[int], conditional: bool,
               num_classes: int = 0) -> list[_Row]:
    """The same figures for real data at the model's N, one real sample set per seed.

    Points: held-out points against the true mixture. Images: a random part of the training split (real images
    the reference never saw) against the held-out split, exactly as samples are measured; what a model drawing
    new images from the data distribution scores, and what one copying its training images scores too. A
    conditional model's samples are class-balanced (``balanced_labels``), so its floor is too (``balanced_subset``).
    Class agreement: held-out images (the classifier was trained on the training split).
    """
    test = hub.dataset(dataset_name, "test")
    n = min(num_samples, len(test)) if test.kind == "points" else num_samples
    per_seed, details, data = [], {}, f"{dataset_name}:test"
    for seed in seeds:
        if test.kind == "points":
            keep = _subset(torch.arange(len(test)), n, seed)
            scores, details_points = point_scores(test.data[keep], test)
            details = {name: details_points for name in scores}
            if conditional and test.labels is not None:
                centres, _ = mixture_of(test)
                scores["class_agreement"] = mode_agreement(test.data[keep], centres, test.labels[keep].numpy())
        else:
            train = hub.dataset(dataset_name, "train")
            classifier = load_classifier(dataset_name)
            balanced = conditional and num_classes > 0 and train.labels is not None
            keep = (balanced_subset(train.labels, n, num_classes, seed) if balanced
                    else _subset(torch.arange(len(train)), n, seed))
            scores = image_set_scores(train.data[keep], test, classifier, seed, None)
            if conditional and test.labels is not None:
                held = _subset(torch.arange(len(test)), n, seed)
                scores["class_agreement"] = class_agreement(classifier.features_and_logits(test.data[held])[1],
                                                            test.labels[held])
            details = {name: {**d, "floor_classes": "balanced" if balanced else "random"}
                       for name, d in _image_details(train, test, classifier).items()}
            data = f"{dataset_name}:train"
        per_seed.append(scores)
    rows = _aggregate(per_seed, data, n, details)
    for row in rows:
        row.name += "_floor"
        row.details = {**row.details, "floor": True}
        row.sampled = False
    return rows


def evaluate(hub: Hub, ref: str, options: EvalOptions | None = None) -> list[MetricRecord]:
    """Measure ``ref`` (quality, floor, speed as ``options`` say) and record every figure; return the rows."""
    opts = options or EvalOptions()
    if opts.repeats < 1:
        raise InvalidArgument("repeats", f"must be >= 1 (independent sample sets), got {opts.repeats}")
    version = hub.resolve(ref)
    loaded = hub.load(version.ref)  # the exact version, even if an alias moves meanwhile
    model = loaded.model
    spec = hub.parts.dataset(version.dataset)
    kind = spec.kind
    n = opts.num_samples or (POINT_SAMPLES if kind == "points" else len(hub.dataset(version.dataset, "test")))
    if n < PR_K + 1:
        raise InvalidArgument("num_samples", f"need at least {PR_K + 1} samples, got {n}")
    conditional = is_conditional(model, version)
    train = hub.dataset(version.dataset, "train")
    num_classes = train.num_classes or (int(train.labels.max()) + 1 if train.labels is not None else 0)
    sampler, steps = resolved_sampling(model, opts.sampler, opts.steps)
    common = {"seed": opts.seed, "repeats": opts.repeats, "conditional": conditional,
              "sampler_requested": opts.sampler, "steps_requested": opts.steps}
    rows: list[_Row] = []
    started = time.perf_counter()
    if opts.quality:
        rows += _quality_rows(hub, model, version.dataset, kind, n, opts, conditional, num_classes)
    if opts.floor:
        rows += floor_rows(hub, version.dataset, n, _seeds(opts), conditional, num_classes)
    if opts.speed:
        rows += _speed_rows(model, opts, conditional, version.dataset)
    common["eval_wall_s"] = round(time.perf_counter() - started, 2)
    hardware = hardware_description(loaded.device)
    return [
        hub.registry.add_metric(version.id, row.name, float(row.value), data=row.data, num_samples=row.num_samples,
                                hardware=hardware, sampler=sampler if row.sampled else None,
                                steps=steps if row.sampled else None, details={**common, **row.details})
        for row in rows
    ]


def _quality_rows(hub: Hub, model: GenerativeModel, dataset_name: str, kind: str, n: int, opts: EvalOptions,
                  conditional: bool, num_classes: int) -> list[_Row]:
    """Quality figures of ``opts.repeats`` sample sets (seeds seed, seed + 1, ...), averaged, with intervals."""
    train = hub.dataset(dataset_name, "train")
    per_seed: list[dict[str, float]] = []
    details: dict[str, dict[str, Any]] = {}
    memo: list[_Row] = []
    for seed in _seeds(opts):
        draw = dict(seed=seed, sampler=opts.sampler, steps=opts.steps, chunk=opts.chunk)
        if kind == "points":
            # mode coverage is about the unconditional distribution, as in the literature
            scores, point_details = point_scores(draw_samples(model, n, **draw), train)
            details = {name: point_details for name in scores}
            if conditional and num_classes:
                labels = balanced_labels(n, num_classes)
                centres, _ = mixture_of(train)
                samples = draw_samples(model, n, labels=labels, **draw)
                scores["class_agreement"] = mode_agreement(samples, centres, labels)
        else:
            test = hub.dataset(dataset_name, "test")
            classifier = load_classifier(dataset_name)
            labels = balanced_labels(n, num_classes) if conditional and num_classes else None
            samples = draw_samples(model, n, labels=labels, **draw)
            scores = image_set_scores(samples, test, classifier, seed, labels)
            details = _image_details(train, test, classifier)
            if not memo:  # the first sample set is enough: the check looks for copies, not a precise figure
                memo = _memorisation_rows(samples, train, test, f"{dataset_name}:train")
        per_seed.append(scores)
    data = dataset_name if kind == "points" else f"{dataset_name}:test"
    return _aggregate(per_seed, data, n, details) + memo


def _speed_rows(model: GenerativeModel, opts: EvalOptions, conditional: bool, dataset: str) -> list[_Row]:
    def make_request(seeds: list[int]) -> SampleRequest:
        return SampleRequest(seeds=seeds, sampler=opts.sampler, steps=opts.steps,
                             class_labels=[0] * len(seeds) if conditional else None)

    batches = (1, opts.max_batch) if opts.max_batch > 1 else (1,)
    rows = []
    for result, suffix in zip(measure_speed(model.sample, make_request, batches, budget_s=opts.speed_budget_s,
                                            min_repeats=opts.min_repeats), ("batch1", "batchmax")):
        n = result.batch * result.repeats
        for name, value in (("latency_p50_ms", result.p50_ms), ("latency_p99_ms", result.p99_ms),
                            ("images_per_s", result.images_per_s)):
            rows.append(_Row(f"{name}_{suffix}", value, dataset, n, result.details()))
    return rows
