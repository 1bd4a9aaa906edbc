"""The built-in offline datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hub.builtin.datasets import grid25_centres, load_digits, load_grid25, load_ring8, load_shapes, shape_class_names
from hub.errors import InvalidArgument


def test_digits_are_scaled_split_and_deterministic() -> None:
    train, test = load_digits("train"), load_digits("test")
    assert train.data.shape == (1500, 1, 8, 8) and test.data.shape == (297, 1, 8, 8)
    assert train.data.min() >= -1 and train.data.max() <= 1
    assert set(train.labels.tolist()) == set(range(10))
    big = load_digits("train", 16)
    assert big.data.shape == (1500, 1, 16, 16)
    assert torch.equal(big.labels, train.labels)


def test_shapes_have_labels_captions_and_the_colour_they_claim() -> None:
    ds = load_shapes("test")
    assert ds.data.shape == (1200, 3, 32, 32)
    assert ds.num_classes == 48 and len(ds.captions) == 1200
    for i in range(20):
        assert ds.captions[i] == shape_class_names()[int(ds.labels[i])]
        image = (ds.data[i] + 1) / 2  # [3, H, W] in [0, 1]
        lit = image.sum(0) > 0.3
        ys, xs = np.nonzero(lit.numpy())
        caption = ds.captions[i]
        assert ("top" in caption) == (ys.mean() < 16) and ("left" in caption) == (xs.mean() < 16)
        mean_rgb = image[:, lit].mean(1)
        if "red" in caption:
            assert mean_rgb[0] > 0.8 and mean_rgb[1] < 0.3
        if "blue" in caption:
            assert mean_rgb[2] > 0.8 and mean_rgb[0] < 0.3


def test_mixtures_match_the_literature() -> None:
    grid = load_grid25("train")
    assert grid.data.shape == (20000, 2) and grid.meta["std"] == 0.05
    centres = torch.tensor(grid25_centres(), dtype=torch.float32)
    nearest = torch.cdist(grid.data, centres).min(1).values
    assert (nearest < 3 * 0.05).float().mean() > 0.98
    assert len(torch.unique(grid.labels)) == 25
    ring = load_ring8("test")
    assert torch.allclose(ring.data.norm(dim=1).mean(), torch.tensor(2.0), atol=0.01)


def test_unknown_split_names_the_choices() -> None:
    with pytest.raises(InvalidArgument, match="train"):
        load_digits("validation")
