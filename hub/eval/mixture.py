"""Mode coverage of 2D Gaussian mixtures, as defined in the mode-collapse literature.

Definitions (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018), so figures compare with their tables:

- a sample is **high quality** when its Euclidean distance to the nearest mode centre is at most
  ``3 * std`` (std of each mixture component; true samples pass with probability 1 - exp(-4.5) = 98.9%);
- a mode is **covered** when at least ``min_count`` high-quality samples are nearest to it. PacGAN counts a
  mode as lost with fewer than 20 of 2,500 samples on the 25-grid: a fifth of the 100 expected per mode.
  The default here is that same rule for any N and K: ``ceil(0.2 * N / K)`` (20 for 2,500 on 25 modes);
- a mode's **fair share** is N / K samples; ``min_mode_ratio`` is the least-visited mode's high-quality
  count over it (real data: about 0.8 at N = 2,500 on the 25-grid, from sampling noise alone);
- **mode KL** is KL(q || p) of the generated distribution over modes (each sample assigned to its
  nearest centre) from the true, uniform one (PacGAN's "reverse KL"): 0 for a perfect spread,
  log(K) for a single mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from hub.errors import InvalidArgument

HIGH_QUALITY_STDS = 3.0
COVERED_FRACTION = 0.2  # of the expected count per mode (PacGAN: 20 of 100)


def default_min_count(num_samples: int, num_modes: int) -> int:
    """PacGAN's threshold: a fifth of the samples a mode expects under the true uniform mixture (at least 1)."""
    return max(1, math.ceil(COVERED_FRACTION * num_samples / num_modes))


@dataclass(frozen=True)
class MixtureScore:
    modes_covered: int  # modes with >= min_count high-quality samples
    num_modes: int
    high_quality_share: float  # share of samples within 3 std of their nearest centre
    mode_kl: float  # KL(generated mode histogram || uniform), nats
    min_count: int
    num_samples: int
    counts: list[int] = field(default_factory=list)  # high-quality samples per mode
    modes_with_any: int = 0  # modes with at least one high-quality sample (VEEGAN's looser count)
    min_mode_ratio: float = 0.0  # the least-visited mode's high-quality samples over its fair share N / K
    max_mode_ratio: float = 0.0  # the most-visited mode's, likewise (1 and 1 for a perfect spread)

    def details(self) -> dict[str, object]:
        return {
            "num_modes": self.num_modes,
            "min_count": self.min_count,
            "high_quality_radius_stds": HIGH_QUALITY_STDS,
            "high_quality_per_mode": self.counts,
            "modes_with_any_high_quality": self.modes_with_any,
            "min_mode_ratio": self.min_mode_ratio,
            "max_mode_ratio": self.max_mode_ratio,
            "definition": "VEEGAN/PacGAN: high quality within 3 std of the nearest centre; "
                          "covered with >= min_count high-quality samples",
        }


def _points(samples: torch.Tensor | np.ndarray) -> np.ndarray:
    array = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else np.asarray(samples)
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] == 0:
        raise InvalidArgument("samples", f"expected 2D points [N, 2], got shape {tuple(array.shape)}")
    return array.astype(np.float64, copy=False)


def nearest_mode(samples: torch.Tensor | np.ndarray, centres: Sequence[Sequence[float]] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """([N] index of each sample's nearest centre, [N] distance to it)."""
    points = _points(samples)
    c = np.asarray(centres, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 2:
        raise InvalidArgument("centres", f"expected mode centres [K, 2], got shape {tuple(c.shape)}")
    dist = np.linalg.norm(points[:, None, :] - c[None, :, :], axis=2)  # [N, K]
    which = dist.argmin(axis=1)
    return which, dist[np.arange(len(points)), which]


def mixture_score(
    samples: torch.Tensor | np.ndarray,
    centres: Sequence[Sequence[float]] | np.ndarray,
    std: float,
    min_count: int | None = None,
) -> MixtureScore:
    """Modes covered, high-quality share and mode KL of ``samples`` [N, 2] against a mixture of equal weights."""
    if not std > 0:
        raise InvalidArgument("std", f"must be > 0, got {std}")
    which, dist = nearest_mode(samples, centres)
    k, n = len(centres), len(which)
    threshold = default_min_count(n, k) if min_count is None else min_count
    if threshold < 1:
        raise InvalidArgument("min_count", f"must be >= 1, got {threshold}")
    good = dist <= HIGH_QUALITY_STDS * std
    counts = np.bincount(which[good], minlength=k)
    q = np.bincount(which, minlength=k) / n
    nz = q > 0
    kl = float((q[nz] * np.log(q[nz] * k)).sum())
    return MixtureScore(
        modes_covered=int((counts >= threshold).sum()),
        num_modes=k,
        high_quality_share=float(good.mean()),
        mode_kl=kl,
        min_count=threshold,
        num_samples=n,
        counts=[int(c) for c in counts],
        modes_with_any=int((counts > 0).sum()),
        min_mode_ratio=float(counts.min() * k / n),
        max_mode_ratio=float(counts.max() * k / n),
    )


def mode_agreement(samples: torch.Tensor | np.ndarray, centres: Sequence[Sequence[float]] | np.ndarray,
                   requested: Sequence[int] | np.ndarray) -> float:
    """Conditional point models: share of samples whose nearest centre is the requested mode."""
    which, _ = nearest_mode(samples, centres)
    want = np.asarray(requested)
    if want.shape != which.shape:
        raise InvalidArgument("requested", f"need one requested mode per sample: {len(which)} samples, {want.shape} labels")
    return float((which == want).mean())
