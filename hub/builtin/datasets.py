"""Offline datasets: scikit-learn's digits, procedural coloured shapes, 2D Gaussian mixtures.

All are deterministic: the same split is the same tensor on every machine.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache
from typing import Callable

import numpy as np
import torch

from hub.datasets import SPLITS, Dataset, DatasetSpec
from hub.errors import InvalidArgument
from hub.hookspecs import hookimpl

DIGITS_TEST_SIZE = 297  # of 1797: leaves 1500 for training


def _check_split(name: str, split: str) -> None:
    if split not in SPLITS:
        raise InvalidArgument("split", f"dataset {name!r} has splits {list(SPLITS)}, not {split!r}")


@lru_cache(maxsize=8)
def load_digits(split: str = "train", size: int = 8) -> Dataset:
    """scikit-learn's 8x8 digits in [-1, 1], optionally upsampled (bilinear) to ``size``."""
    name = "digits" if size == 8 else f"digits{size}"
    _check_split(name, split)
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    order = np.random.RandomState(0).permutation(len(bunch.images))
    idx = order[DIGITS_TEST_SIZE:] if split == "train" else order[:DIGITS_TEST_SIZE]
    images = torch.tensor(bunch.images[idx], dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0  # [N, 1, 8, 8]
    if size != 8:
        images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    labels = torch.tensor(bunch.target[idx], dtype=torch.int64)
    return Dataset(name, split, images.clamp(-1, 1).contiguous(), labels, class_names=[str(d) for d in range(10)])


SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (1.0, 0.15, 0.15), "green": (0.15, 0.85, 0.2), "blue": (0.2, 0.35, 1.0), "yellow": (1.0, 0.9, 0.15)}
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
SHAPES_SIZES = {"train": 6000, "test": 1200}


def shape_caption(shape: str, colour: str, position: str) -> str:
    return f"a {colour} {shape}, {position}"


def shape_class_names() -> list[str]:
    """Class index = (shape * |colours| + colour) * |positions| + position."""
    return [shape_caption(s, c, p) for s, c, p in itertools.product(SHAPES, COLOURS, POSITIONS)]


def _shape_mask(shape: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    if shape == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    if shape == "square":
        return (np.abs(xx - cx) <= r * 0.85) & (np.abs(yy - cy) <= r * 0.85)
    # upward triangle: inside the band below the apex and between two slanted edges
    top, bottom = cy - r, cy + r * 0.8
    half_width = (yy - top) / (bottom - top) * r
    return (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= half_width)


@lru_cache(maxsize=4)
def load_shapes(split: str = "train", size: int = 32) -> Dataset:
    """Coloured circles, squares and triangles in one of four quadrants, with captions."""
    _check_split("shapes", split)
    n = SHAPES_SIZES[split]
    rng = np.random.RandomState(1 if split == "train" else 2)
    colour_names = list(COLOURS)
    shape_i = rng.randint(len(SHAPES), size=n)
    colour_i = rng.randint(len(colour_names), size=n)
    pos_i = rng.randint(len(POSITIONS), size=n)
    images = np.zeros((n, 3, size, size), dtype=np.float32)
    quarter = size / 4
    for k in range(n):
        r = rng.uniform(0.17, 0.23) * size
        cx = quarter * (1 if pos_i[k] % 2 == 0 else 3) + rng.uniform(-1.5, 1.5)
        cy = quarter * (1 if pos_i[k] < 2 else 3) + rng.uniform(-1.5, 1.5)
        mask = _shape_mask(SHAPES[shape_i[k]], cx, cy, r, size)
        rgb = np.asarray(COLOURS[colour_names[colour_i[k]]], dtype=np.float32)
        images[k] = mask[None] * rgb[:, None, None]
    labels = (shape_i * len(colour_names) + colour_i) * len(POSITIONS) + pos_i
    captions = [shape_caption(SHAPES[s], colour_names[c], POSITIONS[p]) for s, c, p in zip(shape_i, colour_i, pos_i)]
    meta = {
        "attributes": {"shape": list(SHAPES), "colour": colour_names, "position": list(POSITIONS)},
        "shape": torch.tensor(shape_i),
        "colour": torch.tensor(colour_i),
        "position": torch.tensor(pos_i),
    }
    data = torch.from_numpy(images) * 2 - 1  # [N, 3, H, W] in [-1, 1]
    return Dataset("shapes", split, data, torch.tensor(labels, dtype=torch.int64), shape_class_names(), captions, meta)


# The mixtures of the mode-collapse literature (Metz et al. 2017; Srivastava et al. 2017).
MIXTURE_SIZES = {"train": 20000, "test": 5000}


def ring8_centres() -> np.ndarray:
    angles = 2 * math.pi * np.arange(8) / 8
    return np.stack([2.0 * np.cos(angles), 2.0 * np.sin(angles)], axis=1)


def grid25_centres() -> np.ndarray:
    ticks = np.arange(-4.0, 4.1, 2.0)
    return np.array([(x, y) for x in ticks for y in ticks])


def _mixture(name: str, centres: np.ndarray, std: float, split: str) -> Dataset:
    _check_split(name, split)
    rng = np.random.RandomState(3 if split == "train" else 4)
    n = MIXTURE_SIZES[split]
    which = rng.randint(len(centres), size=n)
    points = centres[which] + std * rng.randn(n, 2)
    return Dataset(
        name,
        split,
        torch.tensor(points, dtype=torch.float32),
        torch.tensor(which, dtype=torch.int64),
        class_names=[f"mode {i}" for i in range(len(centres))],
        meta={"centres": centres.tolist(), "std": std},
    )


@lru_cache(maxsize=4)
def load_ring8(split: str = "train") -> Dataset:
    return _mixture("gmm-ring8", ring8_centres(), 0.02, split)


@lru_cache(maxsize=4)
def load_grid25(split: str = "train") -> Dataset:
    return _mixture("gmm-grid25", grid25_centres(), 0.05, split)


def _spec(name: str, description: str, load: Callable[[str], Dataset], kind: str = "image") -> DatasetSpec:
    return DatasetSpec(name=name, description=description, load=load, kind=kind)


@hookimpl
def register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    register(_spec("digits", "scikit-learn digits, 1x8x8, 10 classes (1500 train / 297 test)", lambda s: load_digits(s, 8)))
    register(_spec("digits16", "scikit-learn digits upsampled to 1x16x16 (bilinear)", lambda s: load_digits(s, 16)))
    register(_spec("shapes", "procedural coloured shapes, 3x32x32, 48 classes with captions", load_shapes))
    register(_spec("gmm-ring8", "2D mixture of 8 Gaussians on a ring of radius 2, std 0.02", load_ring8, "points"))
    register(_spec("gmm-grid25", "2D mixture of 25 Gaussians on a 5x5 grid, spacing 2, std 0.05", load_grid25, "points"))
