"""The "vae" family: a KL-regularised convolutional autoencoder (the first stage of latent diffusion).

Encoder and decoder are stacks of residual blocks with stride-2 downsampling (factor 2 per extra level,
so ``channel_mults`` of length 3 gives the factor 4 of the shipped model). The loss is reconstruction
(MSE) plus a small KL term toward N(0, I), as in Rombach et al. (2022) without the perceptual and
adversarial terms, which this small data does not need. After training, the latent scale factor
(1 / std of the training set's latent means) is computed and stored in the config, so the latent
denoiser sees unit-variance latents.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

import torch
import torch.nn.functional as F
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

from genhub_ddpm.unet import Downsample, Upsample, norm_groups
from genhub_ldm.common import check_options, index_batches, load_modules_state, modules_state

if TYPE_CHECKING:
    from hub.datasets import Dataset

INIT_SEED = 0
SCALE_SAMPLES = 2048  # training images whose latents set the scale factor


@dataclass
class VAEConfig(ModelConfig):
    """Autoencoder shape and loss; ``scale_factor`` is measured on the training data, not chosen."""

    sample_shape: tuple[int, ...] = (3, 32, 32)  # [C, H, W]
    latent_channels: int = 4
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 4)  # one level each; H and W shrink by 2 ** (levels - 1)
    num_res_blocks: int = 1
    kl_weight: float = 1e-3  # times the KL summed over the latent and divided by the pixel count (like the MSE)
    scale_factor: float = 1.0  # set by training: 1 / std of the training latents

    def __post_init__(self) -> None:
        self.sample_shape = tuple(self.sample_shape)
        self.channel_mults = tuple(self.channel_mults)
        if len(self.sample_shape) != 3:
            raise InvalidArgument("sample_shape", f"the vae needs images [C, H, W], got {list(self.sample_shape)}")
        if not self.channel_mults or min(self.channel_mults) < 1:
            raise InvalidArgument("channel_mults", f"need at least one level, each >= 1, got {list(self.channel_mults)}")
        f = self.downsample_factor
        if self.sample_shape[1] % f or self.sample_shape[2] % f:
            raise InvalidArgument("channel_mults", f"{len(self.channel_mults)} levels downsample by {f}; H and W must be divisible by {f}")
        for name in ("latent_channels", "base_channels", "num_res_blocks"):
            if getattr(self, name) < 1:
                raise InvalidArgument(name, f"must be >= 1, got {getattr(self, name)}")
        if self.kl_weight < 0:
            raise InvalidArgument("kl_weight", f"must be >= 0, got {self.kl_weight}")
        if not self.scale_factor > 0:
            raise InvalidArgument("scale_factor", f"must be > 0, got {self.scale_factor}")

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channel_mults) - 1)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        f = self.downsample_factor
        return (self.latent_channels, self.sample_shape[1] // f, self.sample_shape[2] // f)


class Block(nn.Module):
    """Residual block without a time embedding."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(norm_groups(in_ch), in_ch), nn.SiLU(), nn.Conv2d(in_ch, out_ch, 3, padding=1),
            nn.GroupNorm(norm_groups(out_ch), out_ch), nn.SiLU(), nn.Conv2d(out_ch, out_ch, 3, padding=1),
        )
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


def _head(ch: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.GroupNorm(norm_groups(ch), ch), nn.SiLU(), nn.Conv2d(ch, out, 3, padding=1))


class Encoder(nn.Module):
    """[N, C, H, W] -> [N, 2 * latent, H/f, W/f]: the mean and log-variance of q(z | x)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        ch = cfg.base_channels * cfg.channel_mults[0]
        layers: list[nn.Module] = [nn.Conv2d(cfg.sample_shape[0], ch, 3, padding=1)]
        for i, mult in enumerate(cfg.channel_mults):
            for _ in range(cfg.num_res_blocks):
                layers.append(Block(ch, cfg.base_channels * mult))
                ch = cfg.base_channels * mult
            if i < len(cfg.channel_mults) - 1:
                layers.append(Downsample(ch))
        layers += [Block(ch, ch), _head(ch, 2 * cfg.latent_channels)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """[N, latent, H/f, W/f] -> [N, C, H, W]."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        mults = list(reversed(cfg.channel_mults))
        ch = cfg.base_channels * mults[0]
        layers: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, ch, 3, padding=1), Block(ch, ch)]
        for i, mult in enumerate(mults):
            for _ in range(cfg.num_res_blocks):
                layers.append(Block(ch, cfg.base_channels * mult))
                ch = cfg.base_channels * mult
            if i < len(mults) - 1:
                layers.append(Upsample(ch))
        layers.append(_head(ch, cfg.sample_shape[0]))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class VAEModel(GenerativeModel):
    """The autoencoder in memory. ``encode`` / ``decode`` work in the scaled (unit-variance) latent space."""

    output_kind: ClassVar[str] = "image"

    def __init__(self, config: VAEConfig) -> None:
        self.config = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(INIT_SEED)
            self.encoder = Encoder(config)
            self.decoder = Decoder(config)
        self.encoder.eval()
        self.decoder.eval()
        self.device = torch.device("cpu")
        self.train_steps = 0

    # ---- the latent interface used by the denoiser ------------------------------------------

    def _moments(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(images).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Images [N, C, H, W] in [-1, 1] -> scaled latent means [N, *latent_shape] (deterministic)."""
        out = [self._moments(images[i : i + batch_size].to(self.device))[0] for i in range(0, images.shape[0], batch_size)]
        return torch.cat(out) * self.config.scale_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents [N, *latent_shape] -> images [N, C, H, W] clamped to [-1, 1]."""
        return self.decoder(latents.to(self.device) / self.config.scale_factor).clamp(-1.0, 1.0)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(images))

    # ---- training ---------------------------------------------------------------------------

    def train(
        self, dataset: Dataset, options: TrainOptions, progress: Callable[[TrainProgress], None] | None = None
    ) -> TrainResult:
        """MSE reconstruction + ``kl_weight`` * KL(q(z|x) || N(0, I)); then measure the latent scale factor."""
        check_options(options)
        if tuple(dataset.sample_shape) != self.config.sample_shape:
            raise InvalidArgument(
                "dataset", f"{dataset.name!r} items have shape {list(dataset.sample_shape)}, the vae was built for {list(self.config.sample_shape)}"
            )
        self.to(options.device)
        gen = torch.Generator().manual_seed(options.seed)
        data = dataset.data.to(torch.float32)
        params = [*self.encoder.parameters(), *self.decoder.parameters()]
        opt = torch.optim.Adam(params, lr=options.learning_rate)
        batches = index_batches(len(dataset), options.batch_size, gen)
        log_every = max(1, min(50, options.steps // 20))
        losses: list[float] = []
        running, count = 0.0, 0
        started = time.perf_counter()
        self.encoder.train()
        self.decoder.train()
        for step in range(1, options.steps + 1):
            x = data[next(batches)].to(self.device)
            mean, logvar = self._moments(x)
            eps = torch.randn(mean.shape, generator=gen).to(self.device)
            z = mean + (0.5 * logvar).exp() * eps
            recon = self.decoder(z)
            rec = F.mse_loss(recon, x)
            kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=(1, 2, 3)).mean() / x[0].numel()
            loss = rec + self.config.kl_weight * kl
            value = float(loss.detach())
            if not math.isfinite(value):
                raise InvalidArgument("learning_rate", f"loss became {value} at step {step}; lower the learning rate (was {options.learning_rate})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.train_steps += 1
            running, count = running + value, count + 1
            if step % log_every == 0 or step == options.steps:
                losses.append(running / count)
                if progress is not None:
                    progress(TrainProgress(step=step, total=options.steps, loss=losses[-1]))
                running, count = 0.0, 0
        self.encoder.eval()
        self.decoder.eval()
        # The latent scale factor, as latent diffusion computes it: unit variance for the denoiser.
        subset = data[torch.randperm(len(dataset), generator=gen)[:SCALE_SAMPLES]]
        with torch.no_grad():
            means = torch.cat([self._moments(subset[i : i + 256].to(self.device))[0] for i in range(0, subset.shape[0], 256)])
        self.config = self.config.replace(scale_factor=float(1.0 / means.std().clamp_min(1e-6)))
        recon_mse = float(F.mse_loss(self.reconstruct(subset[:512]), subset[:512].to(self.device)))
        return TrainResult(
            losses=losses,
            extra={"wall_time_s": time.perf_counter() - started, "scale_factor": self.config.scale_factor, "train_recon_mse": recon_mse},
        )

    # ---- sampling ---------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        """Decodes prior latents in one pass; unconditional, no options."""
        return Capabilities(output_kind=self.output_kind, sample_shape=self.config.sample_shape, samplers=("vae",))

    def sample(self, request: SampleRequest, callback: StepCallback | None = None) -> torch.Tensor:
        """Decode latents drawn from the prior N(0, I): blurry by design, for inspecting the latent space.

        The ``ldm`` family is the generator; this exists so every registered version can sample.
        """
        self.capabilities.check(request)
        z = NoiseSource(request.seeds, self.device).randn(*self.config.latent_shape)
        out = self.decode(z)
        report_step(callback, StepEvent(1, 1, out if request.preview_every else None))
        return out

    # ---- weights ----------------------------------------------------------------------------

    def _modules(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "decoder": self.decoder}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return modules_state(self._modules())

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        load_modules_state(self._modules(), tensors)

    def to(self, device: torch.device | str) -> VAEModel:
        self.device = torch.device(device)
        self.encoder.to(self.device)
        self.decoder.to(self.device)
        return self

    def describe(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "family": VAEFamily.name,
            "output_kind": self.output_kind,
            "sample_shape": list(cfg.sample_shape),
            "latent_shape": list(cfg.latent_shape),
            "downsample_factor": cfg.downsample_factor,
            "scale_factor": cfg.scale_factor,
            "parameters": sum(p.numel() for m in self._modules().values() for p in m.parameters()),
            "default_steps": 1,
        }


class VAEFamily(ModelFamily):
    """KL autoencoder: the first stage of latent diffusion."""

    name: ClassVar[str] = "vae"
    config_class: ClassVar[type[ModelConfig]] = VAEConfig
    description: ClassVar[str] = "KL-regularised convolutional autoencoder (latent diffusion's first stage)"

    def build(self, config: ModelConfig, context: BuildContext) -> VAEModel:
        if not isinstance(config, VAEConfig):
            raise InvalidArgument("config", f"family 'vae' needs a VAEConfig, got {type(config).__name__}")
        return VAEModel(config)

    def default_config(self, dataset: Dataset | None = None) -> VAEConfig:
        if dataset is None:
            return VAEConfig()
        if dataset.kind != "image":
            raise InvalidArgument("dataset", f"the vae needs an image dataset; {dataset.name!r} holds 2D points")
        _, h, w = dataset.sample_shape
        mults = (1, 2, 4) if h % 4 == 0 and w % 4 == 0 else (1,)
        return VAEConfig(sample_shape=tuple(dataset.sample_shape), channel_mults=mults)
