"""The "gan" family: a plain GAN baseline, the reference for mode collapse.

No mapping network, no R1, no EMA, no augmentation: z goes straight through an MLP (points) or a DCGAN-like
convolutional generator (images), trained with the non-saturating loss and Adam(0.5, 0.999).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

import torch
from torch import nn

from hub.errors import InvalidArgument
from hub.model import (
    BuildContext,
    Capabilities,
    GenerativeModel,
    ModelConfig,
    ModelFamily,
    NoiseSource,
    SampleRequest,
    StepCallback,
    StepEvent,
    TrainOptions,
    TrainProgress,
    TrainResult,
    report_step,
)

from genhub_stylegan.baseline import ConvDiscriminator, ConvGenerator, MLPDiscriminator, MLPGenerator
from genhub_stylegan.common import check_dataset, load_modules_state_dict, modules_state_dict
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

    def __post_init__(self) -> None:
        self.sample_shape = tuple(self.sample_shape)
        if len(self.sample_shape) == 3:
            c, h, w = self.sample_shape
            if h != w or h < 4 or h & (h - 1) or c < 1:
                raise InvalidArgument("sample_shape", f"images must be [C, R, R] with R a power of 2 >= 4, got {list(self.sample_shape)}")
        elif len(self.sample_shape) != 1 or self.sample_shape[0] < 1:
            raise InvalidArgument("sample_shape", f"need [D] points or [C, R, R] images, got {list(self.sample_shape)}")
        for name in ("z_dim", "width", "num_layers", "channels"):
            if getattr(self, name) < 1:
                raise InvalidArgument(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise InvalidArgument(name, f"must be in [0, 1), got {getattr(self, name)}")
        if self.d_lr_ratio <= 0:
            raise InvalidArgument("d_lr_ratio", f"must be > 0, got {self.d_lr_ratio}")

    @property
    def is_points(self) -> bool:
        return len(self.sample_shape) == 1


def build_plain_networks(config: GANConfig) -> tuple[nn.Module, nn.Module]:
    if config.is_points:
        dim = config.sample_shape[0]
        return (MLPGenerator(config.z_dim, dim, config.width, config.num_layers),
                MLPDiscriminator(dim, config.width, config.num_layers))
    c, r, _ = config.sample_shape
    return ConvGenerator(config.z_dim, c, r, config.channels), ConvDiscriminator(c, r, config.channels)


class GANModel(GenerativeModel):
    """Generator (sampled from directly: no EMA) and discriminator."""

    output_kind: ClassVar[str] = "image"

    def __init__(self, config: GANConfig, context: BuildContext) -> None:
        self.config = config
        self.context = context
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(INIT_SEED)
            self.G, self.D = build_plain_networks(config)
        self.G.eval()
        self.D.eval()
        self.train_steps = 0
        self.device = torch.device("cpu")

    def _fakes(self, batch: int) -> torch.Tensor:
        return self.G(torch.randn(batch, self.config.z_dim, device=self.device))

    def _count(self) -> None:
        self.train_steps += 1

    def train(
        self, dataset: Dataset, options: TrainOptions, progress: Callable[[TrainProgress], None] | None = None
    ) -> TrainResult:
        """Non-saturating loss, nothing else; seeded by ``options.seed``."""
        check_dataset(dataset, self.config.sample_shape, "gan")
        self.to(options.device)
        setup = AdversarialSetup(generator=self.G, discriminator=self.D, generate=self._fakes,
                                 betas=(self.config.adam_beta1, self.config.adam_beta2),
                                 d_lr_ratio=self.config.d_lr_ratio, after_step=self._count)
        result = train_adversarial(setup, dataset.data.to(torch.float32), options, self.device, progress)
        result.extra["train_steps"] = self.train_steps
        return result

    @property
    def capabilities(self) -> Capabilities:
        """One pass, unconditional, no options."""
        return Capabilities(output_kind=self.output_kind, sample_shape=self.config.sample_shape, samplers=("gan",))

    def sample(self, request: SampleRequest, callback: StepCallback | None = None) -> torch.Tensor:
        """[N, C, R, R] in [-1, 1] or [N, D] points in one pass; sample i depends on seeds[i] only."""
        self.capabilities.check(request)
        with torch.no_grad():
            out = self.G(NoiseSource(request.seeds, self.device).randn(self.config.z_dim))
        report_step(callback, StepEvent(1, 1, out if request.preview_every else None))
        return out

    def _modules(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return modules_state_dict(self._modules(), {"train_steps": torch.tensor([self.train_steps], dtype=torch.int64)})

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        load_modules_state_dict(self._modules(), tensors)
        if "train_steps" in tensors:
            self.train_steps = int(tensors["train_steps"].reshape(-1)[0])

    def to(self, device: torch.device | str) -> GANModel:
        self.device = torch.device(device)
        self.G.to(self.device)
        self.D.to(self.device)
        return self

    def describe(self) -> dict[str, Any]:
        return {
            "family": GANFamily.name,
            "output_kind": self.output_kind,
            "sample_shape": list(self.config.sample_shape),
            "parameters": sum(p.numel() for p in self.G.parameters()),
            "discriminator_parameters": sum(p.numel() for p in self.D.parameters()),
            "steps": 1,
            "z_dim": self.config.z_dim,
            "supports_truncation": False,
            "params": {},
            "train_steps": self.train_steps,
        }


class GANPointsModel(GANModel):
    output_kind: ClassVar[str] = "points"


class GANFamily(ModelFamily):
    """Plain GAN (Goodfellow et al. 2014): MLP for 2D points, DCGAN-like for images; the mode-collapse baseline."""

    name: ClassVar[str] = "gan"
    config_class: ClassVar[type[ModelConfig]] = GANConfig
    description: ClassVar[str] = "Plain GAN baseline (no mapping network, no R1, no EMA): MLP for points, DCGAN-like for images"

    def build(self, config: ModelConfig, context: BuildContext) -> GANModel:
        if not isinstance(config, GANConfig):
            raise InvalidArgument("config", f"family 'gan' needs a GANConfig, got {type(config).__name__}")
        return (GANPointsModel if config.is_points else GANModel)(config, context)

    def default_config(self, dataset: Dataset | None = None) -> GANConfig:
        if dataset is None:
            return GANConfig()
        if dataset.kind == "points":
            return GANConfig(sample_shape=tuple(dataset.sample_shape))
        return GANConfig(sample_shape=tuple(dataset.sample_shape), z_dim=64)
