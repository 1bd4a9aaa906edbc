"""The "gan" family: a plain GAN baseline, the reference for mode collapse.

No mapping network, no R1, no augmentation: z goes straight through an MLP (points) or a DCGAN-like
convolutional generator (images), trained with the non-saturating loss and Adam(0.5, 0.999). No EMA by default
(``ema_decay`` 0, as gan-grid25 ships: the collapsing control samples its live generator); with ``ema_decay`` > 0 an
EMA of the generator samples, as in the other GAN families.
"""

from __future__ import annotations

from dataclasses import dataclass
import copy
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from hub.errors import InvalidArgument
from hub.model import (BuildContext, Capabilities, GenerativeModel, ModelConfig, ModelFamily, NoiseSource, SampleRequest,
                       StepCallback, StepEvent, TrainOptions, TrainProgress, TrainResult, report_step)
from hub.training import ModuleWeights, check_dataset, ema_decay_at, ema_update

from genhub_stylegan.baseline import ConvDiscriminator, ConvGenerator, MLPDiscriminator, MLPGenerator
from genhub_stylegan.training import AdversarialSetup, train_adversarial

if TYPE_CHECKING:
    from hub.datasets import Dataset

INIT_SEED = 0


@dataclass
class GANConfig(ModelConfig):
    """A plain GAN (steps, batch, lr, seed: TrainOptions)."""

    sample_shape: tuple[int, ...] = (2,)  # [D] points or [C, R, R] images (R a power of 2 >= 4)
    z_dim: int = 16
    width: int = 128  # points: MLP width (G and D)
    num_layers: int = 3  # points: hidden layers (G and D)
    channels: int = 64  # images: widest feature maps (G at 4x4, D at its last layer)
    adam_beta1: float = 0.5  # DCGAN's choice
    adam_beta2: float = 0.999
    d_lr_ratio: float = 1.0  # discriminator lr = ratio x TrainOptions.learning_rate
    ema_decay: float = 0.0  # > 0: sample from an EMA of G (its cap; warm-up: hub.training.ema_decay_at); 0: live G

    def __post_init__(self) -> None:
        self.sample_shape = tuple(self.sample_shape)
        if len(self.sample_shape) == 3:
            c, h, w = self.sample_shape
            if h != w or h < 4 or h & (h - 1) or c < 1:
                raise InvalidArgument("sample_shape", f"images must be [C, R, R] with R a power of 2 >= 4, got {list(self.sample_shape)}")
        elif len(self.sample_shape) != 1 or self.sample_shape[0] < 1:
            raise InvalidArgument("sample_shape", f"need [D] points or [C, R, R] images, got {list(self.sample_shape)}")
        self.check_at_least_one("z_dim", "width", "num_layers", "channels")
        self.check_fractions("adam_beta1", "adam_beta2", "ema_decay")
        if self.d_lr_ratio <= 0:
            raise InvalidArgument("d_lr_ratio", f"must be > 0, got {self.d_lr_ratio}")


def build_plain_networks(config: GANConfig) -> tuple[nn.Module, nn.Module]:
    if config.is_points:
        dim = config.sample_shape[0]
        return (MLPGenerator(config.z_dim, dim, config.width, config.num_layers),
                MLPDiscriminator(dim, config.width, config.num_layers))
    c, r, _ = config.sample_shape
    return ConvGenerator(config.z_dim, c, r, config.channels), ConvDiscriminator(c, r, config.channels)


class GANModel(ModuleWeights, GenerativeModel):
    """Generator, discriminator and, with ``ema_decay`` > 0, the generator's EMA, which then samples (else G does)."""

    def __init__(self, config: GANConfig, context: BuildContext) -> None:
        self.config = config
        self.context = context
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(INIT_SEED)
            self.G, self.D = build_plain_networks(config)
        self.G.eval()
        self.D.eval()
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval() if config.ema_decay > 0 else None
        self.train_steps = 0
        self.device = torch.device("cpu")

    def _fakes(self, batch: int) -> torch.Tensor:
        return self.G(torch.randn(batch, self.config.z_dim, device=self.device))

    def _after_step(self) -> None:
        self.train_steps += 1
        if self.G_ema is not None:
            ema_update(self.G_ema, self.G, ema_decay_at(self.train_steps, self.config.ema_decay))

    def train(
        self, dataset: Dataset, options: TrainOptions, progress: Callable[[TrainProgress], None] | None = None
    ) -> TrainResult:
        """Non-saturating loss, nothing else (and the EMA when on); seeded by ``options.seed``."""
        check_dataset(dataset, self.config.sample_shape, "gan", min_items=2)
        self.to(options.device)
        setup = AdversarialSetup(generator=self.G, discriminator=self.D, generate=self._fakes,
                                 betas=(self.config.adam_beta1, self.config.adam_beta2),
                                 d_lr_ratio=self.config.d_lr_ratio, after_step=self._after_step)
        result = train_adversarial(setup, dataset.data.to(torch.float32), options, self.device, progress)
        result.extra["train_steps"] = self.train_steps
        return result

    @property
    def capabilities(self) -> Capabilities:
        """One pass, unconditional, no options."""
        return Capabilities(sample_shape=self.config.sample_shape, samplers=("gan",))

    def sample(self, request: SampleRequest, callback: StepCallback | None = None) -> torch.Tensor:
        """[N, C, R, R] in [-1, 1] or [N, D] points in one pass; sample i depends on seeds[i] only."""
        self.capabilities.check(request)
        net = self.G if self.G_ema is None else self.G_ema
        with torch.no_grad():
            out = net(NoiseSource(request.seeds, self.device).randn(self.config.z_dim))
        report_step(callback, StepEvent(1, 1, out if request.preview_every else None))
        return out

    def _modules(self) -> dict[str, nn.Module]:
        """``G.*``, ``D.*`` and, with the EMA on, ``G_ema.*`` (sampled from); checkpoints without it load as before."""
        return {"G": self.G, "D": self.D, **({"G_ema": self.G_ema} if self.G_ema is not None else {})}

    def describe(self) -> dict[str, Any]:
        """The capabilities, with the network sizes."""
        return {**super().describe(), "family": GANFamily.name, "parameters": self.parameter_count("G"),
                "discriminator_parameters": self.parameter_count("D"), "z_dim": self.config.z_dim,
                "train_steps": self.train_steps}


class GANFamily(ModelFamily, name="gan", config_class=GANConfig, model_class=GANModel):
    """Plain GAN baseline (no mapping network, no R1, no EMA by default): MLP for points, DCGAN-like for images

    Plain GAN (Goodfellow et al. 2014): MLP for 2D points, DCGAN-like for images; the mode-collapse baseline.
    """

    def config_for(self, dataset: Dataset) -> GANConfig:
        if dataset.kind == "points":
            return GANConfig(sample_shape=tuple(dataset.sample_shape))
        return GANConfig(sample_shape=tuple(dataset.sample_shape), z_dim=64)
