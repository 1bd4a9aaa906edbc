"""The DDPM family: config, model (train / sample / weights) and family object.

The network (``unet.py`` / ``mlp.py``), the noise schedule (``schedule.py``)
and the reverse loop (any registered ``Sampler``) stay apart; this module only
wires them together and writes the training loop out.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from hub.errors import InvalidArgument
from hub.model import (BuildContext, Capabilities, GenerativeModel, ModelConfig, ModelFamily, NoiseSource, SampleCost,
                       SampleRequest,
                       StepCallback, TrainOptions, TrainProgress, TrainResult)
from hub.training import (LossLog, ModuleWeights, check_dataset, check_options, ema_decay_at, ema_update, index_batches,
                          optimizer_step)
from hub.sampling import PREDICTION_TYPES, TIMESTEP_SPACINGS
from hub.stepping import DiffusionTrajectory, SteppedModel

from genhub_ddpm.mlp import MLPDenoiser
from genhub_ddpm.schedule import BETA_SCHEDULES, make_process
from genhub_ddpm.unet import UNet

if TYPE_CHECKING:
    from hub.datasets import Dataset

NETWORKS = ("unet", "mlp")
INIT_SEED = 0  # weights of a fresh build are a function of the config alone


@dataclass
class DDPMConfig(ModelConfig):
    """A DDPM: network shape, noise process, conditioning, training and sampling defaults."""

    sample_shape: tuple[int, ...] = (1, 16, 16)  # [C, H, W] for "unet", [D] for "mlp"
    network: str = "unet"  # "unet" (images) or "mlp" (points)
    base_channels: int = 32  # unet width of the first level; mlp hidden width
    channel_mults: tuple[int, ...] = (1, 2, 2)  # unet: width multiplier per level, one level per entry
    num_res_blocks: int = 1  # unet: residual blocks per level; mlp: residual blocks in all
    fourier_octaves: int = 0  # mlp: also feed sin/cos of the coordinates at 2^0..2^(k-1) (sharp modes); 0: raw
    attention_resolutions: tuple[int, ...] = ()  # unet: extra attention at these H; the middle always has it
    dropout: float = 0.0
    num_timesteps: int = 1000
    beta_schedule: str = "linear"  # "linear" or "cosine"
    beta_start: float = 1e-4  # "linear" only
    beta_end: float = 0.02  # "linear" only
    prediction_type: str = "epsilon"  # "epsilon", "v_prediction" or "sample"
    clip_sample: float | None = 1.0  # clamp x0 estimates while sampling; None for unbounded data (points)
    # which timesteps a k-step sampler visits (diffusers' names): "leading" (genhub's default, as diffusers' DDIM)
    # starts at T - T/k; "trailing" starts at T - 1, which few-step sampling needs (bench/few_step_sampling.py)
    timestep_spacing: str = "leading"
    num_classes: int = 0  # > 0: class-conditional, index num_classes is the "null" (unconditional) class
    class_dropout: float = 0.1  # fraction of training labels replaced by the null class (enables guidance)
    ema_decay: float = 0.999  # sampling uses the EMA of the weights
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max gradient norm; 0: no clipping
    default_sampler: str = "ddim"
    default_steps: int = 50

    def __post_init__(self) -> None:
        # Lists arrive from JSON or from hand-written configs; tuples keep the config hashable and comparable.
        self.sample_shape = tuple(self.sample_shape)
        self.channel_mults = tuple(self.channel_mults)
        self.attention_resolutions = tuple(self.attention_resolutions)
        if self.network not in NETWORKS:
            raise InvalidArgument("network", f"{self.network!r} is not one of {list(NETWORKS)}")
        if self.network == "unet":
            if len(self.sample_shape) != 3:
                raise InvalidArgument("sample_shape", f"network 'unet' needs [C, H, W], got {list(self.sample_shape)}")
            if not self.channel_mults or min(self.channel_mults) < 1:
                raise InvalidArgument("channel_mults", f"need at least one level, each >= 1, got {list(self.channel_mults)}")
            down = 2 ** (len(self.channel_mults) - 1)
            _, h, w = self.sample_shape
            if h % down or w % down:
                raise InvalidArgument(
                    "channel_mults",
                    f"{len(self.channel_mults)} levels halve H and W {len(self.channel_mults) - 1} times, so they must be "
                    f"divisible by {down}; got {h}x{w}. Use fewer levels or resize the data",
                )
        elif len(self.sample_shape) != 1:
            raise InvalidArgument("sample_shape", f"network 'mlp' needs [D] (points), got {list(self.sample_shape)}")
        if min(self.sample_shape) < 1:
            raise InvalidArgument("sample_shape", f"every dimension must be >= 1, got {list(self.sample_shape)}")
        self.check_at_least_one("base_channels", "num_res_blocks")
        if not 0 <= self.fourier_octaves <= 16:
            raise InvalidArgument("fourier_octaves", f"must be between 0 and 16, got {self.fourier_octaves}")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise InvalidArgument("beta_schedule", f"{self.beta_schedule!r} is not one of {list(BETA_SCHEDULES)}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise InvalidArgument("prediction_type", f"{self.prediction_type!r} is not one of {list(PREDICTION_TYPES)}")
        if self.timestep_spacing not in TIMESTEP_SPACINGS:
            raise InvalidArgument("timestep_spacing", f"{self.timestep_spacing!r} is not one of {list(TIMESTEP_SPACINGS)}")
        if self.num_timesteps < 1:
            raise InvalidArgument("num_timesteps", f"must be >= 1, got {self.num_timesteps}")
        if self.num_classes < 0:
            raise InvalidArgument("num_classes", f"must be >= 0 (0: unconditional), got {self.num_classes}")
        self.check_fractions("dropout", "class_dropout")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InvalidArgument("ema_decay", f"must be in [0, 1), got {self.ema_decay}")
        if not 1 <= self.default_steps <= self.num_timesteps:
            raise InvalidArgument("default_steps", f"must be between 1 and num_timesteps={self.num_timesteps}, got {self.default_steps}")


def build_network(config: DDPMConfig) -> nn.Module:
    """The denoising network of ``config``: f(x_t, t, labels) -> prediction of ``prediction_type``."""
    if config.network == "mlp":
        return MLPDenoiser(config.sample_shape[0], config.base_channels, config.num_res_blocks, config.num_classes,
                           config.fourier_octaves)
    c, h, _ = config.sample_shape
    return UNet(
        in_channels=c,
        resolution=h,
        base_channels=config.base_channels,
        channel_mults=config.channel_mults,
        num_res_blocks=config.num_res_blocks,
        attention_resolutions=config.attention_resolutions,
        num_classes=config.num_classes,
        dropout=config.dropout,
    )


class DDPMModel(ModuleWeights, SteppedModel, GenerativeModel):
    """A DDPM in memory: the trained network, its EMA (used to sample) and the noise process."""

    def __init__(self, config: DDPMConfig, context: BuildContext) -> None:
        self.config = config
        self.context = context
        self.process = make_process(config.beta_schedule, config.num_timesteps, config.prediction_type, config.clip_sample,
                                    config.beta_start, config.beta_end, config.timestep_spacing)
        with torch.random.fork_rng(devices=[]):  # deterministic init without disturbing the caller's RNG
            torch.manual_seed(INIT_SEED)
            self.net = build_network(config)
        self.ema = copy.deepcopy(self.net).requires_grad_(False).eval()
        self.train_steps = 0  # optimiser steps so far, over every train() call; drives the EMA warm-up
        self._opt: torch.optim.Optimizer | None = None
        self.device = torch.device("cpu")

    # ---- training -------------------------------------------------------------------------------

    def _check_dataset(self, dataset: Dataset) -> None:
        check_dataset(dataset, self.config.sample_shape, "ddpm")
        k = self.config.num_classes
        if k > 0:
            if dataset.labels is None:
                raise InvalidArgument("dataset", f"the model is class-conditional (num_classes={k}) but {dataset.name!r} has no labels")
            lo, hi = int(dataset.labels.min()), int(dataset.labels.max())
            if lo < 0 or hi >= k:
                raise InvalidArgument("dataset", f"{dataset.name!r} labels span [{lo}, {hi}], outside [0, {k}) for num_classes={k}")

    def train(
        self, dataset: Dataset, options: TrainOptions, progress: Callable[[TrainProgress], None] | None = None
    ) -> TrainResult:
        """Train in place (AdamW, EMA), deterministic for a given ``options.seed``."""
        self._check_dataset(dataset)
        check_options(options)
        cfg = self.config
        self.to(options.device)
        # All randomness from one CPU generator: the same seed trains the same weights on any device.
        gen = torch.Generator().manual_seed(options.seed)
        data = dataset.data.to(torch.float32)  # [N, C, H, W] or [N, D], kept on the CPU
        labels = dataset.labels if cfg.num_classes > 0 else None
        batches = index_batches(len(dataset), options.batch_size, gen)
        opt = self._optimizer(options.learning_rate)
        log = LossLog(options.steps, ("loss",), progress)
        started = time.perf_counter()
        self.net.train()
        for step in range(1, options.steps + 1):
            idx = next(batches)
            x0 = data[idx]
            t = torch.randint(0, cfg.num_timesteps, (x0.shape[0],), generator=gen)  # [B]
            noise = torch.randn(x0.shape, generator=gen)
            y = None
            if labels is not None:
                y = labels[idx].long()
                drop = torch.rand(x0.shape[0], generator=gen) < cfg.class_dropout
                y = torch.where(drop, torch.full_like(y, cfg.num_classes), y).to(self.device)
            x0, t, noise = x0.to(self.device), t.to(self.device), noise.to(self.device)
            x_t = self.process.add_noise(x0, noise, t)
            loss = F.mse_loss(self.net(x_t, t, y), self.process.target(x0, noise, t))
            log.add(step, options.learning_rate, loss=float(loss.detach()))  # a non-finite loss stops before the update
            optimizer_step(opt, loss, self.net.parameters(), cfg.grad_clip)
            self.train_steps += 1
            ema_update(self.ema, self.net, ema_decay_at(self.train_steps, cfg.ema_decay))
        self.net.eval()
        wall = time.perf_counter() - started
        return TrainResult(losses=log.losses, extra={"train_steps": self.train_steps, "wall_time_s": wall, "log_every": log.every})

    def _optimizer(self, learning_rate: float) -> torch.optim.Optimizer:
        # Kept across train() calls: training in chunks continues Adam's moments instead of restarting them.
        if self._opt is None:
            self._opt = torch.optim.AdamW(self.net.parameters(), lr=learning_rate, weight_decay=self.config.weight_decay)
        for group in self._opt.param_groups:
            group["lr"] = learning_rate
        return self._opt

    # ---- sampling -------------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        cfg = self.config
        return Capabilities(
            sample_shape=cfg.sample_shape, samplers=tuple(self.context.samplers.names()),
            default_sampler=cfg.default_sampler, max_steps=cfg.num_timesteps, default_steps=cfg.default_steps, eta=True,
            num_classes=cfg.num_classes, guidance=cfg.num_classes > 0,
        )

    def _steps(self, request: SampleRequest) -> tuple[str, int]:
        """(sampler name, steps) ``request`` samples with: its own, or the config's defaults."""
        name = request.sampler or self.config.default_sampler
        if request.steps is not None:
            return name, request.steps
        if name == self.config.default_sampler:
            return name, self.config.default_steps
        # another sampler's default, capped for short processes (a DDPM sampler defaults to 1000)
        return name, min(self.context.samplers.get(name).default_steps, self.config.num_timesteps)

    def _guidance(self, request: SampleRequest) -> float | None:
        """The guidance a request runs with; None when its passes are plain (no doubled rows)."""
        g = request.guidance_scale
        return g if request.class_labels is not None and g is not None and g != 1.0 else None

    def sample_cost(self, request: SampleRequest) -> SampleCost:
        _, steps = self._steps(request)
        rows = request.num_samples * (2 if self._guidance(request) is not None else 1)
        return SampleCost(passes=steps, rows=rows, values=math.prod(self.config.sample_shape))

    def sample(self, request: SampleRequest, callback: StepCallback | None = None) -> torch.Tensor:
        """[N, C, H, W] in [-1, 1] (or [N, D] points), sample i a function of seeds[i] and the request alone."""
        if self.can_step(request):
            return self.sample_alone(request, callback)
        labels = self._checked_labels(request)  # a sampler with only a whole loop (a third-party one, say)
        name, steps = self._steps(request)
        sampler = self.context.samplers.get(name)
        sampler.check_steps(steps, self.process)
        noise = NoiseSource(request.seeds, self.device)
        x_T = noise.randn(*self.config.sample_shape)  # [N, *sample_shape], drawn before any step noise
        model_fn = self._model_fn(labels, self._guidance(request))
        out = sampler.sample(
            model_fn, self.process, x_T, steps=steps, noise=noise, eta=request.eta, callback=callback, preview_every=request.preview_every
        )
        return out.clamp(-1.0, 1.0) if self.output_kind == "image" else out

    def can_step(self, request: SampleRequest) -> bool:
        name = request.sampler or self.config.default_sampler
        return name not in self.context.samplers or self.context.samplers.get(name).can_step()

    def _model_fn(self, labels: torch.Tensor | None, guidance: float | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        ema = self.ema

        def plain(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return ema(x, t, labels)

        def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            assert labels is not None and guidance is not None
            null = torch.full_like(labels, self.config.num_classes)
            cond, uncond = ema(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null])).chunk(2)
            return uncond + guidance * (cond - uncond)

        return plain if guidance is None else guided

    def _checked_labels(self, request: SampleRequest) -> torch.Tensor | None:
        self.capabilities.check(request)
        return None if request.class_labels is None else torch.tensor(request.class_labels, dtype=torch.long, device=self.device)

    def begin(self, request: SampleRequest) -> DiffusionTrajectory:
        labels = self._checked_labels(request)
        name, steps = self._steps(request)
        sampler = self.context.samplers.get(name)  # NotFound names the samplers there are
        sampler.check_steps(steps, self.process)
        if request.preview_every < 0:
            raise InvalidArgument("preview_every", f"must be >= 0 (0: no previews), got {request.preview_every}")
        noise = NoiseSource(request.seeds, self.device)
        x_T = noise.randn(*self.config.sample_shape)  # [N, *sample_shape], drawn before any step noise
        state = sampler.start(self.process, x_T, steps=steps, noise=noise, eta=request.eta)
        assert state is not None, f"sampler {name!r} steps (can_step) but start() gave no state"
        guidance = self._guidance(request)
        if guidance is not None:
            assert labels is not None
            labels = torch.cat([labels, torch.full_like(labels, self.config.num_classes)])  # [cond; null]
        finish = (lambda x: x.clamp(-1.0, 1.0)) if self.output_kind == "image" else None
        return DiffusionTrajectory(request, state, labels, guidance, finish)

    def network_pass(self, x: torch.Tensor, t: torch.Tensor, conds: list[Any], rows: list[int]) -> torch.Tensor:
        # x: [R, ...], t: [R]; a request without labels uses the null class (what the network does for None)
        if all(c is None for c in conds):
            return self.ema(x, t, None)
        null = self.config.num_classes
        labels = [c if c is not None else torch.full((n,), null, dtype=torch.long, device=x.device) for c, n in zip(conds, rows)]
        return self.ema(x, t, torch.cat(labels))

    # ---- weights --------------------------------------------------------------------------------

    def _modules(self) -> dict[str, nn.Module]:
        """``net.*`` (trained weights, to resume), ``ema.*`` (sampled from); ``train_steps`` beside them."""
        return {"net": self.net, "ema": self.ema}

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Load ``state_dict`` output; either of ``net.*`` / ``ema.*`` alone stands for both (slim checkpoints)."""
        net = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
        ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
        net, ema = net or ema, ema or net
        expected = set(self.net.state_dict())
        for name, part in (("net", net), ("ema", ema)):
            missing, unexpected = sorted(expected - set(part)), sorted(set(part) - expected)
            if missing or unexpected:
                raise InvalidArgument(
                    "weights",
                    f"{name} weights do not fit this config: missing {missing[:4]}, unexpected {unexpected[:4]} "
                    f"({len(missing)} missing, {len(unexpected)} unexpected); load them with the config they were saved with",
                )
        try:
            self.net.load_state_dict(net)
            self.ema.load_state_dict(ema)
        except RuntimeError as err:  # shape mismatches
            raise InvalidArgument("weights", f"weights do not fit this config: {err}") from None
        self._opt = None  # moments of other weights would mislead the next train()
        if "train_steps" in tensors:
            self.train_steps = int(tensors["train_steps"].reshape(-1)[0])

    def to(self, device: torch.device | str) -> DDPMModel:
        self.device = torch.device(device)
        self.net.to(self.device)
        self.ema.to(self.device)
        if self._opt is not None:  # Adam's moments must follow their parameters
            for state in self._opt.state.values():
                for key, value in state.items():
                    if isinstance(value, torch.Tensor) and key != "step":
                        state[key] = value.to(self.device)
        return self

    def describe(self) -> dict[str, Any]:
        """The capabilities, with the network and the noise process."""
        cfg = self.config
        return {**super().describe(), "family": DDPMFamily.name, "network": cfg.network,
                "parameters": self.parameter_count("net"), "num_timesteps": cfg.num_timesteps, "beta_schedule": cfg.beta_schedule,
                "prediction_type": cfg.prediction_type, "train_steps": self.train_steps}


def _image_levels(h: int, w: int) -> tuple[int, ...]:
    """Channel multipliers for an H x W image: down to about 4x4, as far as H and W halve evenly."""
    mults = [1]
    while len(mults) < 4 and min(h, w) // 2 ** len(mults) >= 4 and h % 2 ** len(mults) == 0 and w % 2 ** len(mults) == 0:
        mults.append(2)
    return tuple(mults)


class DDPMFamily(ModelFamily, name="ddpm", config_class=DDPMConfig, model_class=DDPMModel):
    """Denoising diffusion probabilistic model (UNet for images, MLP for 2D points)

    Denoising diffusion (Ho et al. 2020): a UNet for images, an MLP for points; any registered sampler.
    """

    def config_for(self, dataset: Dataset) -> DDPMConfig:
        num_classes = 0
        if dataset.labels is not None and len(dataset) > 0:
            num_classes = dataset.num_classes or int(dataset.labels.max()) + 1
        if dataset.kind == "points":
            return DDPMConfig(
                sample_shape=tuple(dataset.sample_shape),
                network="mlp",
                base_channels=128,
                channel_mults=(1,),
                num_res_blocks=3,
                clip_sample=None,  # points are not confined to [-1, 1]
                num_classes=num_classes,
            )
        _, h, w = dataset.sample_shape
        return DDPMConfig(sample_shape=tuple(dataset.sample_shape), channel_mults=_image_levels(h, w), num_classes=num_classes)
