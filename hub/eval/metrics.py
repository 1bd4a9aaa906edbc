"""Sample-quality metrics on feature vectors: Fréchet distance, k-NN precision and recall, class agreement.

All functions take feature matrices ``[N, D]`` (numpy or torch) and return plain floats, so they can be
checked on known inputs without any model: FD(X, X) is 0, precision and recall of a set against itself are 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from hub.errors import InvalidArgument

ArrayLike = np.ndarray | torch.Tensor


def _as_features(name: str, x: ArrayLike, min_rows: int = 2) -> np.ndarray:
    """A float64 [N, D] array; a clear error for any other shape or for too few rows."""
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if array.ndim != 2:
        raise InvalidArgument(name, f"expected features [N, D], got shape {tuple(array.shape)}; flatten images first")
    if array.shape[0] < min_rows:
        raise InvalidArgument(name, f"needs at least {min_rows} rows, got {array.shape[0]}; evaluate more samples")
    if not np.isfinite(array).all():
        raise InvalidArgument(name, "contains NaN or infinite values; the model produced non-finite samples")
    return array.astype(np.float64, copy=False)


@dataclass(frozen=True)
class Gaussian:
    """Mean and covariance of a feature set: what the Fréchet distance compares."""

    mean: np.ndarray  # [D]
    cov: np.ndarray  # [D, D]
    count: int

    @classmethod
    def fit(cls, features: ArrayLike) -> Gaussian:
        x = _as_features("features", features)
        return cls(x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1]), x.shape[0])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition (negative round-off clipped)."""
    sym = (matrix + matrix.T) / 2
    values, vectors = np.linalg.eigh(sym)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance_gaussians(a: Gaussian, b: Gaussian) -> float:
    """||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2).

    The trace term equals tr((S_a S_b)^1/2) but is computed from symmetric matrices only, so no
    ``scipy.linalg.sqrtm`` of a non-symmetric, near-singular product (which fails or goes complex on small
    feature sets): the eigenvalues of S_a^1/2 S_b S_a^1/2 are real and non-negative up to round-off, clipped.
    """
    if a.mean.shape != b.mean.shape:
        raise InvalidArgument("features", f"feature sizes differ: {a.mean.shape[0]} and {b.mean.shape[0]}")
    root_a = _psd_sqrt(a.cov)
    middle = root_a @ b.cov @ root_a
    eigen = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(eigen, 0.0, None)).sum())
    diff = a.mean - b.mean
    value = float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2.0 * trace_sqrt)
    return max(value, 0.0)  # round-off can leave -1e-12 for identical sets


def frechet_distance(x: ArrayLike, y: ArrayLike) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, D] and [M, D]."""
    return frechet_distance_gaussians(Gaussian.fit(x), Gaussian.fit(y))


def _kth_neighbour_radii(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """[N] distance of each row to its k-th nearest other row (the row itself excluded)."""
    radii = []
    for start in range(0, x.shape[0], chunk):
        d = torch.cdist(x[start:start + chunk], x)  # [chunk, N]
        # k + 1 smallest: the first is the row itself at distance 0
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def _share_inside(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int) -> float:
    """Share of ``queries`` inside at least one ball (centre, radius)."""
    inside = 0
    for start in range(0, queries.shape[0], chunk):
        d = torch.cdist(queries[start:start + chunk], centres)  # [chunk, M]
        inside += int((d <= radii[None, :]).any(dim=1).sum())
    return inside / queries.shape[0]


@dataclass(frozen=True)
class PrecisionRecall:
    precision: float  # share of generated samples inside the real manifold
    recall: float  # share of real samples inside the generated manifold
    k: int


def precision_recall(real: ArrayLike, fake: ArrayLike, k: int = 3, chunk: int = 1024) -> PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds.

    Each set's manifold is the union of balls around its points, each ball reaching the point's k-th nearest
    neighbour in the same set. Precision: share of ``fake`` inside the real manifold; recall: share of
    ``real`` inside the fake manifold. The paper uses k = 3. Duplicated points shrink radii to 0, so a set
    of identical copies has precision/recall of exact matches only.
    """
    if not isinstance(k, int) or k < 1:
        raise InvalidArgument("k", f"must be a positive integer, got {k!r}")
    r = torch.from_numpy(_as_features("real", real, min_rows=k + 1))
    f = torch.from_numpy(_as_features("fake", fake, min_rows=k + 1))
    if r.shape[1] != f.shape[1]:
        raise InvalidArgument("fake", f"feature sizes differ: real {r.shape[1]}, fake {f.shape[1]}")
    real_radii = _kth_neighbour_radii(r, k, chunk)
    fake_radii = _kth_neighbour_radii(f, k, chunk)
    return PrecisionRecall(
        precision=_share_inside(f, r, real_radii, chunk),
        recall=_share_inside(r, f, fake_radii, chunk),
        k=k,
    )


def class_agreement(predicted: ArrayLike, requested: ArrayLike) -> float:
    """Share of samples whose predicted class (argmax of logits [N, K], or labels [N]) is the requested one."""
    pred = predicted.detach().cpu().numpy() if isinstance(predicted, torch.Tensor) else np.asarray(predicted)
    want = requested.detach().cpu().numpy() if isinstance(requested, torch.Tensor) else np.asarray(requested)
    if pred.ndim == 2:
        pred = pred.argmax(axis=1)
    if pred.shape != want.shape or pred.ndim != 1 or len(pred) == 0:
        raise InvalidArgument("requested", f"need one requested label per sample: {pred.shape} predictions, {want.shape} labels")
    return float((pred == want).mean())


def nearest_distances(queries: ArrayLike, reference: ArrayLike, chunk: int = 1024) -> np.ndarray:
    """[N] Euclidean distance of each query row to its nearest ``reference`` row."""
    q = torch.from_numpy(_as_features("queries", queries, min_rows=1))
    r = torch.from_numpy(_as_features("reference", reference, min_rows=1))
    if q.shape[1] != r.shape[1]:
        raise InvalidArgument("queries", f"feature sizes differ: queries {q.shape[1]}, reference {r.shape[1]}")
    return torch.cat([torch.cdist(q[s:s + chunk], r).min(dim=1).values for s in range(0, len(q), chunk)]).numpy()


@dataclass(frozen=True)
class Memorisation:
    nn_ratio: float  # median distance of samples to their nearest training row / the same for held-out rows
    copy_share: float  # share of samples closer to a training row than the closest `quantile` of held-out rows
    quantile: float


def memorisation(samples: ArrayLike, train: ArrayLike, heldout: ArrayLike, quantile: float = 0.05) -> Memorisation:
    """How close samples sit to the training set, measured against held-out real data (which was never trained on).

    A model that generalises places samples as far from the training set as new real data is: ``nn_ratio``
    about 1 and ``copy_share`` about ``quantile``. A model that copies training rows drives ``nn_ratio`` towards
    0 and ``copy_share`` towards 1. Blurry or broken samples sit far from everything (``nn_ratio`` above 1).
    """
    if not 0.0 < quantile < 1.0:
        raise InvalidArgument("quantile", f"must be in (0, 1), got {quantile}")
    model = nearest_distances(samples, train)
    real = nearest_distances(heldout, train)
    ref_median = float(np.median(real))
    if ref_median <= 0:
        raise InvalidArgument("heldout", "held-out rows duplicate training rows (median distance 0); deduplicate the splits")
    threshold = float(np.quantile(real, quantile))
    return Memorisation(float(np.median(model)) / ref_median, float((model < threshold).mean()), quantile)


# two-sided 95% Student t quantiles by degrees of freedom; the normal 1.96 beyond the table
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


@dataclass(frozen=True)
class Interval:
    """Mean of a figure over independent sample sets, its standard deviation and a 95% t-interval of the mean."""

    mean: float
    std: float
    low: float
    high: float
    values: tuple[float, ...]

    def details(self) -> dict[str, object]:
        return {"per_seed": list(self.values), "std": self.std, "ci95": [self.low, self.high]}


def interval(values: list[float] | tuple[float, ...]) -> Interval:
    """The mean of repeated measurements with a 95% confidence interval (zero width for a single value)."""
    if not values:
        raise InvalidArgument("values", "need at least one measurement")
    array = np.asarray(values, dtype=np.float64)
    mean = float(array.mean())
    if len(array) == 1:
        return Interval(mean, 0.0, mean, mean, (mean,))
    std = float(array.std(ddof=1))
    half = _T95.get(len(array) - 1, 1.96) * std / math.sqrt(len(array))
    return Interval(mean, std, mean - half, mean + half, tuple(float(v) for v in array))
