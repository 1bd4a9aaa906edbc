"""Dataset types. Datasets are registered by plugins through ``register_datasets``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

SPLITS = ("train", "test")


@dataclass
class Dataset:
    """An in-memory dataset.

    ``data`` is [N, C, H, W] in [-1, 1] for images or [N, 2] for points.
    """

    name: str
    split: str
    data: torch.Tensor
    labels: torch.Tensor | None = None  # [N] int64
    class_names: list[str] | None = None
    captions: list[str] | None = None  # one per item
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. mixture centres and std

    def __post_init__(self) -> None:
        if self.data.dim() not in (2, 4):
            raise ValueError(f"dataset {self.name}: data must be [N, 2] or [N, C, H, W], got shape {tuple(self.data.shape)}")
        n = self.data.shape[0]
        if self.labels is not None and self.labels.shape != (n,):
            raise ValueError(f"dataset {self.name}: labels must be [{n}], got {tuple(self.labels.shape)}")
        if self.captions is not None and len(self.captions) != n:
            raise ValueError(f"dataset {self.name}: {len(self.captions)} captions for {n} items")

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def kind(self) -> str:
        return "points" if self.data.dim() == 2 else "image"

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else 0


@dataclass
class DatasetSpec:
    """A named dataset: ``load(split)`` builds it (deterministically) on demand."""

    name: str
    description: str
    load: Callable[[str], Dataset]
    kind: str = "image"  # "image" or "points"
