"""Sample-quality metrics on feature vectors: Fréchet distance, k-NN precision and recall, class agreement.

All functions take feature matrices ``[N, D]`` (numpy or torch) and return plain floats, so they can be
checked on known inputs without any model: FD(X, X) is 0, precision and recall of a set against itself are 1.
"""

from __future__ import annotations

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
