"""Image features fit on no data: a small convolutional net with random, seeded weights.

The shipped classifiers (``hub.eval.classifier``) are trained on the same training split the models learn
from, so a model that reproduces training images sits exactly where those features are sharpest. The
figures ``fd_random``, ``precision_random`` and ``recall_random`` are measured here instead: two 3x3 conv
levels with ReLU, a 4x4 average-pooled map and a random linear projection to ``FEATURE_DIM`` numbers, all
drawn from ``torch.Generator().manual_seed(seed)`` and never trained. Randomly initialised networks give
usable embeddings for precision/recall-style metrics on data far from ImageNet (Naeem et al. 2020,
"Reliable Fidelity and Diversity Metrics", section 5); here they are the feature space nobody tuned.

What they see: layout, stroke and colour statistics at a few scales. What they do not: class identity, so
a sample that looks digit-like but is no digit can still score well; read them beside the classifier's.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hub.errors import InvalidArgument

FEATURE_DIM = 64
WIDTHS = (32, 64)
POOLED = 4  # side of the pooled map before the projection
DEFAULT_SEED = 0


def _he(generator: torch.Generator, *shape: int) -> torch.Tensor:
    fan_in = math.prod(shape[1:])
    return torch.randn(*shape, generator=generator, dtype=torch.float64).float() * math.sqrt(2.0 / fan_in)


@dataclass
class RandomFeatures:
    """Seeded random conv features for images [N, C, H, W] in [-1, 1] (any H, W >= 4)."""

    in_channels: int
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        if self.in_channels < 1:
            raise InvalidArgument("in_channels", f"must be >= 1, got {self.in_channels}")
        g = torch.Generator().manual_seed(self.seed)
        self.convs = [_he(g, WIDTHS[0], self.in_channels, 3, 3), _he(g, WIDTHS[1], WIDTHS[0], 3, 3)]
        self.projection = _he(g, FEATURE_DIM, WIDTHS[1] * POOLED * POOLED)
        digest = hashlib.sha256()
        for tensor in (*self.convs, self.projection):
            digest.update(tensor.numpy().tobytes())
        self.digest = digest.hexdigest()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """[N, C, H, W] -> [N, FEATURE_DIM]."""
        if images.dim() != 4 or images.shape[1] != self.in_channels or min(images.shape[2:]) < POOLED:
            raise InvalidArgument("images", f"expected [N, {self.in_channels}, H, W] with H, W >= {POOLED}, "
                                  f"got shape {tuple(images.shape)}")
        out = []
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].float().cpu()
            x = F.relu(F.conv2d(x, self.convs[0], padding=1))
            x = F.relu(F.conv2d(F.avg_pool2d(x, 2) if min(x.shape[2:]) >= 2 * POOLED else x, self.convs[1], padding=1))
            x = F.adaptive_avg_pool2d(x, POOLED).flatten(1)
            out.append(x @ self.projection.T)
        return torch.cat(out)

    def describe(self) -> dict[str, object]:
        return {"features": "random", "random_seed": self.seed, "random_sha256": self.digest,
                "random_widths": list(WIDTHS), "feature_dim": FEATURE_DIM}


_cache: dict[tuple[int, int], RandomFeatures] = {}


def random_features(in_channels: int, seed: int = DEFAULT_SEED) -> RandomFeatures:
    """The (cached) extractor for images with ``in_channels`` channels."""
    key = (in_channels, seed)
    if key not in _cache:
        _cache[key] = RandomFeatures(in_channels, seed)
    return _cache[key]
