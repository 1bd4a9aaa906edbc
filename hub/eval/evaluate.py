"""``genhub eval``: measure a registered version's quality and speed and record the figures in the registry.

Metric names (one registry row each; ``data`` says what the samples were compared against):

- points (2D mixtures, ``hub.eval.mixture``): ``modes_covered``, ``high_quality_share``, ``mode_kl``; with
  ``data`` = the dataset (its true centres and std). Conditional models add ``class_agreement`` (share of
  samples nearest to the requested mode).
- images (``hub.eval.metrics`` in the features of ``hub.eval.classifier``): ``fd`` (Fréchet distance to
  the training split), ``precision`` and ``recall`` (k = 3, against an equal-sized sample of the training
  split); conditional models add ``class_agreement`` (share the classifier assigns to the requested class).
  ``data`` is ``<dataset>:train``; ``details`` carry the classifier's name and sha256.
- the floor, the same figures for held-out real data: ``<name>_floor`` rows with ``data`` =
  ``<dataset>:test`` (the test split against the training split; for points, the test split against the
  true mixture), at the same number of samples as the model where the split has that many (by default it
  does: image evaluations draw as many samples as the test split holds). They describe the dataset, and are
  recorded beside every evaluation so a card or table can show "model vs what real data scores".
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
from hub.eval.metrics import Gaussian, class_agreement, frechet_distance_gaussians, precision_recall
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
    min_repeats: int = 3


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
                 labels: list[int] | None = None, chunk: int = 250) -> torch.Tensor:
    """``num_samples`` samples in chunks; sample i depends only on (seed, i), whatever the chunk size."""
    seeds = per_sample_seeds(seed, num_samples)
    parts = []
    with torch.no_grad():
        for start in range(0, num_samples, chunk):
            request = SampleRequest(seeds=seeds[start:start + chunk], sampler=sampler, steps=steps,
                                    class_labels=labels[start:start + chunk] if labels is not None else None)
            parts.append(model.sample(request).detach().float().cpu())
    samples = torch.cat(parts)
    if not torch.isfinite(samples).all():
        raise InvalidArgument("model", "sampling produced NaN or infinite values; the weights are broken or the "
                              "sampler/steps do not suit this model")
    return samples


def balanced_labels(num_samples: int, num_classes: int) -> list[int]:
    """0, 1, ..., K-1, 0, 1, ...: every class requested equally often."""
    return [i % num_classes for i in range(num_samples)]


# -- points --------------------------------------------------------------------------------------------------

def mixture_of(dataset: Dataset) -> tuple[list[list[float]], float]:
    centres, std = dataset.meta.get("centres"), dataset.meta.get("std")
    if centres is None or std is None:
        raise InvalidArgument("dataset", f"{dataset.name!r} has no mixture centres and std in its meta; point metrics "
                              "need them (meta={'centres': [[x, y], ...], 'std': s})")
    return centres, float(std)


def _point_rows(samples: torch.Tensor, dataset: Dataset, name: str) -> list[_Row]:
    centres, std = mixture_of(dataset)
    score = mixture_score(samples, centres, std)
    details = score.details()
    n = score.num_samples
    return [_Row("modes_covered", score.modes_covered, name, n, details),
            _Row("high_quality_share", score.high_quality_share, name, n, details),
            _Row("mode_kl", score.mode_kl, name, n, details)]


# -- images --------------------------------------------------------------------------------------------------

_reference_cache: dict[tuple[str, str, str], tuple[torch.Tensor, Gaussian]] = {}


def reference_features(dataset: Dataset, classifier: FeatureClassifier) -> tuple[torch.Tensor, Gaussian]:
    """Features of a real split and their Gaussian; cached per (dataset, split, classifier digest)."""
    key = (dataset.name, dataset.split, classifier.digest)
    if key not in _reference_cache:
        feats = classifier.features(dataset.data)
        _reference_cache[key] = (feats, Gaussian.fit(feats))
    return _reference_cache[key]


def _subset(features: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """A fixed random subset of n rows (all of them when there are no more than n)."""
    if n >= len(features):
        return features
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))
    return features[order[:n]]


def image_scores(features: torch.Tensor, train_feats: torch.Tensor, train_gauss: Gaussian, seed: int) -> dict[str, float]:
    """FD against the whole training split; precision and recall against an equal-sized part of it."""
    pr = precision_recall(_subset(train_feats, len(features), seed), features, k=PR_K)
    return {"fd": frechet_distance_gaussians(Gaussian.fit(features), train_gauss),
            "precision": pr.precision, "recall": pr.recall}


def _image_rows(samples: torch.Tensor, train: Dataset, classifier: FeatureClassifier, seed: int,
                labels: list[int] | None, data: str) -> list[_Row]:
    feats, logits = classifier.features_and_logits(samples)
    train_feats, train_gauss = reference_features(train, classifier)
    details = {**classifier.describe(), "reference": f"{train.name}:train", "reference_size": len(train_feats),
               "pr_k": PR_K}
    rows = [_Row(k, v, data, len(samples), details) for k, v in image_scores(feats, train_feats, train_gauss, seed).items()]
    if labels is not None:
        rows.append(_Row("class_agreement", class_agreement(logits, torch.tensor(labels)), data, len(samples), details))
    return rows


# -- the whole evaluation -------------------------------------------------------------------------------------

def floor_rows(hub: Hub, dataset_name: str, num_samples: int, seed: int, conditional: bool) -> list[_Row]:
    """The same figures for held-out real data (test split) against the training split or true mixture."""
    test = hub.dataset(dataset_name, "test")
    data = f"{dataset_name}:test"
    if test.kind == "points":
        n = min(num_samples, len(test))
        rows = _point_rows(test.data[:n], test, data)
        if conditional and test.labels is not None:
            centres, _ = mixture_of(test)
            rows.append(_Row("class_agreement", mode_agreement(test.data[:n], centres, test.labels[:n].numpy()), data, n, {}))
    else:
        # at most as many real images as the model was measured with: FD and precision/recall depend on N
        train = hub.dataset(dataset_name, "train")
        keep = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:num_samples].sort().values
        labels = test.labels[keep].tolist() if conditional and test.labels is not None else None
        rows = _image_rows(test.data[keep], train, load_classifier(dataset_name), seed, labels, data)
    for row in rows:
        row.name += "_floor"
        row.details = {**row.details, "floor": True}
        row.sampled = False
    return rows


def evaluate(hub: Hub, ref: str, options: EvalOptions | None = None) -> list[MetricRecord]:
    """Measure ``ref`` (quality, floor, speed as ``options`` say) and record every figure; return the rows."""
    opts = options or EvalOptions()
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
    common = {"seed": opts.seed, "conditional": conditional, "sampler_requested": opts.sampler,
              "steps_requested": opts.steps}
    rows: list[_Row] = []
    started = time.perf_counter()
    if opts.quality:
        draw = dict(seed=opts.seed, sampler=opts.sampler, steps=opts.steps, chunk=opts.chunk)
        if kind == "points":
            # mode coverage is about the unconditional distribution, as in the literature
            rows += _point_rows(draw_samples(model, n, **draw), train, version.dataset)
            if conditional and num_classes:
                labels = balanced_labels(n, num_classes)
                centres, _ = mixture_of(train)
                samples = draw_samples(model, n, labels=labels, **draw)
                rows.append(_Row("class_agreement", mode_agreement(samples, centres, labels), version.dataset, n, {}))
        else:
            labels = balanced_labels(n, num_classes) if conditional and num_classes else None
            samples = draw_samples(model, n, labels=labels, **draw)
            rows += _image_rows(samples, train, load_classifier(version.dataset), opts.seed, labels,
                                f"{version.dataset}:train")
    if opts.floor:
        rows += floor_rows(hub, version.dataset, n, opts.seed, conditional)
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
