from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from hub.datasets import Dataset
from hub.model import BuildContext
from hub.sampling import SamplerRegistry

from genhub_ddpm.samplers import DDIMSampler, DDPMSampler


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    # Tiny nets gain nothing from more threads; on a shared 2-core machine extra threads only contend
    # (measured under load: 18 s for this suite with 1 thread, 170 s with 2).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def context() -> BuildContext:
    return BuildContext(samplers=SamplerRegistry({"ddpm": DDPMSampler(), "ddim": DDIMSampler()}))


@pytest.fixture
def image_dataset() -> Dataset:
    g = torch.Generator().manual_seed(0)
    data = torch.rand(32, 1, 8, 8, generator=g) * 2 - 1  # [N, C, H, W] in [-1, 1]
    labels = torch.arange(32) % 3
    return Dataset("toy-images", "train", data, labels=labels, class_names=["a", "b", "c"])


@pytest.fixture
def point_dataset() -> Dataset:
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    data = centres[torch.arange(64) % 2] + 0.1 * torch.randn(64, 2, generator=g)  # [N, 2]
    return Dataset("toy-points", "train", data)
