"""A tiny, real model family for the server tests: plugin ``tinyfamily``, family ``tiny``.

A two-layer conv net (or a linear map for 2D points) refined over ``steps``
iterations, with fresh per-sample noise each step from ``NoiseSource``. It
reports every step through ``report_step``, and the request parameter
``step_sleep_s`` slows each step down so cancellation, deadline and queue tests
are deterministic. ``TinyModel.steps_taken`` counts steps across calls.

Loaded in-process with ``Hub.open(extra_plugins=[("tinyfamily", tiny_family)])``,
or in a subprocess through an entry point (see ``conftest.write_entry_point``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import nn

from hub.datasets import Dataset
from hub.hookspecs import hookimpl
from hub.model import (
    BuildContext,
    Capabilities,
    GenerativeModel,
    ModelConfig,
    ModelFamily,
    NoiseSource,
    Param,
    SampleRequest,
    StepCallback,
    StepEvent,
    TrainOptions,
    TrainProgress,
    TrainResult,
    report_step,
)

PARAMS = {
    "step_sleep_s": Param(float, "seconds to sleep after each step", default=0.0, min=0.0),
    "noise_scale": Param(float, "noise added each step", default=0.05),
    "sharpen": Param(bool, "tanh(3x) at the end", default=False),
}


@dataclass
class TinyConfig(ModelConfig):
    kind: str = "image"  # "image": [N, C, size, size]; "points": [N, 2]
    channels: int = 1
    size: int = 8
    width: int = 8
    num_classes: int = 10
    default_steps: int = 8


class TinyNet(nn.Module):
    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        c, w = (2, config.width) if config.kind == "points" else (config.channels, config.width)
        self.points = config.kind == "points"
        self.inp = nn.Linear(c, w) if self.points else nn.Conv2d(c, w, 3, padding=1)
        self.out = nn.Linear(w, c) if self.points else nn.Conv2d(w, c, 3, padding=1)
        self.label = nn.Embedding(max(config.num_classes, 1), w)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        h = self.inp(x)  # [N, W, H, W'] or [N, W]
        if labels is not None:
            emb = self.label(labels)
            h = h + (emb if self.points else emb[:, :, None, None])
        return self.out(torch.relu(h))


class TinyModel(GenerativeModel):
    def __init__(self, config: TinyConfig) -> None:
        self.config = config
        self.net = TinyNet(config)
        self.steps_taken = 0

    def sample_shape(self) -> tuple[int, ...]:
        return (2,) if self.config.kind == "points" else (self.config.channels, self.config.size, self.config.size)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            output_kind=self.config.kind, sample_shape=self.sample_shape(), samplers=("euler",), default_sampler="euler",
            max_steps=1000, default_steps=self.config.default_steps, eta=True, num_classes=self.config.num_classes,
            truncation=True, params=PARAMS,
        )

    def sample(self, request: SampleRequest, callback: StepCallback | None = None) -> torch.Tensor:
        self.capabilities.check(request)
        labels = None if request.class_labels is None else torch.tensor(request.class_labels, dtype=torch.int64)
        steps = request.steps or self.config.default_steps
        sleep = float(request.params.get("step_sleep_s", 0.0))
        scale = float(request.params.get("noise_scale", 0.05))
        noise = NoiseSource(request.seeds)
        x = noise.randn(*self.sample_shape())
        with torch.no_grad():
            for i in range(steps):
                x = x - self.net(x, labels) / steps + scale * (1 + request.eta) * noise.randn_like(x)
                if request.truncation is not None:
                    x = x * request.truncation
                self.steps_taken += 1
                if sleep:
                    time.sleep(sleep)
                preview = x.clamp(-1, 1) if request.preview_every and (i + 1) % request.preview_every == 0 else None
                report_step(callback, StepEvent(i + 1, steps, preview))
        if request.params.get("sharpen"):
            x = torch.tanh(3 * x)
        return x.clamp(-1, 1)

    def train(
        self, dataset: Dataset, options: TrainOptions, progress: Callable[[TrainProgress], None] | None = None
    ) -> TrainResult:
        """A few real optimiser steps of denoising on ``dataset``."""
        opt = torch.optim.AdamW(self.net.parameters(), lr=options.learning_rate)
        gen = torch.Generator().manual_seed(options.seed)
        losses = []
        for step in range(options.steps):
            idx = torch.randint(len(dataset), (options.batch_size,), generator=gen)
            x0 = dataset.data[idx]
            labels = dataset.labels[idx] if dataset.labels is not None else None
            eps = torch.randn(x0.shape, generator=gen)
            loss = torch.nn.functional.mse_loss(self.net(x0 + eps, labels), eps)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if progress:
                progress(TrainProgress(step + 1, options.steps, float(loss)))
        return TrainResult(losses)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.net.state_dict())

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.net.load_state_dict(dict(tensors))


class TinyFamily(ModelFamily):
    name = "tiny"
    config_class = TinyConfig
    description = "A tiny conv net refined over a few noisy steps (tests only)"

    def build(self, config: ModelConfig, context: BuildContext) -> GenerativeModel:
        assert isinstance(config, TinyConfig)
        return TinyModel(config)

    def default_config(self, dataset: Dataset | None = None) -> ModelConfig:
        if dataset is not None and dataset.kind == "points":
            return TinyConfig(kind="points", num_classes=max(dataset.num_classes, 1))
        if dataset is not None:
            c, h, _ = dataset.sample_shape
            return TinyConfig(channels=c, size=h, num_classes=max(dataset.num_classes, 1))
        return TinyConfig()


@hookimpl
def register_models(register: Callable[[ModelFamily], None]) -> None:
    register(TinyFamily())
