"""The "ddgan" family: Denoising Diffusion GAN (Xiao et al. 2022, "Tackling the Generative Learning Trilemma").

A few large denoising steps (T = 4 by default). The generator predicts x_0 from (x_t, t, z) and reaches x_{t-1}
through the diffusion posterior q(x_{t-1} | x_t, x_0); a time-conditioned discriminator tells real pairs
(x_{t-1}, x_t) from generated ones. Non-saturating loss with (lazy) R1; an EMA of the generator samples.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

import torch

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

from genhub_ddgan.common import (
    LossLog,
    check_dataset,
    check_options,
    d_loss_nonsaturating,
    ema_decay_at,
    ema_update,
    g_loss_nonsaturating,
    index_batches,
    load_modules_state_dict,
    modules_state_dict,
    r1_penalty,
)
from genhub_ddgan.networks import build_networks
from genhub_ddgan.process import FewStepProcess, describe_schedule

if TYPE_CHECKING:
    from hub.datasets import Dataset

INIT_SEED = 0  # a fresh build's weights are a function of the config alone


@dataclass
class DDGANConfig(ModelConfig):
    """Process, networks and training dynamics of a DDGAN (steps, batch, lr, seed: TrainOptions)."""

    sample_shape: tuple[int, ...] = (1, 8, 8)  # [C, H, W] images or [D] points
    num_steps: int = 4  # T, the denoising steps (trained for and sampled with)
    beta_min: float = 0.1  # the VP schedule's beta(s) = beta_min + s (beta_max - beta_min), s in [0, 1]
    beta_max: float = 20.0
    z_dim: int = 32  # latent per step: makes each denoising step a multimodal (non-Gaussian) distribution
    emb_dim: int = 64  # time (and z) embedding width
    base_channels: int = 32  # images: UNet / discriminator width of the first level
    channel_mults: tuple[int, ...] = (1, 2)  # images: one level per entry, halving H and W between levels
    width: int = 128  # points: MLP width
    num_layers: int = 3  # points: residual blocks in G, hidden layers in D
    fourier_octaves: int = 0  # points: G and D also see sin/cos of the coordinates (hub.layers); 0: raw
    data_scale: float = 1.0  # the model works on data / data_scale
    r1_gamma: float = 0.05  # R1 weight on real x_{t-1}; 0 disables it
    r1_interval: int = 4  # lazy R1: every k-th discriminator step, weighted by k
    ema_decay: float = 0.999
    adam_beta1: float = 0.0  # (0, 0.99) as in StyleGAN2: what the shipped configs were tuned with
    adam_beta2: float = 0.99
    d_lr_ratio: float = 1.0  # discriminator lr = ratio x TrainOptions.learning_rate

    def __post_init__(self) -> None:
        self.sample_shape = tuple(self.sample_shape)
        self.channel_mults = tuple(self.channel_mults)
        if len(self.sample_shape) == 3:
            c, h, w = self.sample_shape
            down = 2 ** (len(self.channel_mults) - 1)
            if not self.channel_mults or min(self.channel_mults) < 1:
                raise InvalidArgument("channel_mults", f"need at least one level, each >= 1, got {list(self.channel_mults)}")
            if c < 1 or h % down or w % down or h // down < 2:
                raise InvalidArgument("channel_mults", f"{len(self.channel_mults)} levels halve H and W "
                                      f"{len(self.channel_mults) - 1} times; {h}x{w} does not allow it. Use fewer levels")
        elif len(self.sample_shape) != 1 or self.sample_shape[0] < 1:
            raise InvalidArgument("sample_shape", f"need [C, H, W] images or [D] points, got {list(self.sample_shape)}")
        if not 1 <= self.num_steps <= 64:
            raise InvalidArgument("num_steps", f"must be between 1 and 64 (a DDGAN uses few steps; 4 is usual), got {self.num_steps}")
        for name in ("emb_dim", "base_channels", "width", "num_layers", "r1_interval"):
            if getattr(self, name) < 1:
                raise InvalidArgument(name, f"must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.fourier_octaves <= 16:
            raise InvalidArgument("fourier_octaves", f"must be between 0 and 16, got {self.fourier_octaves}")
        if self.z_dim < 0:
            raise InvalidArgument("z_dim", f"must be >= 0 (0: a deterministic generator), got {self.z_dim}")
        if not self.data_scale > 0 or self.r1_gamma < 0 or not self.d_lr_ratio > 0:
            raise InvalidArgument("data_scale", f"need data_scale > 0, r1_gamma >= 0, d_lr_ratio > 0; got "
                                  f"{self.data_scale}, {self.r1_gamma}, {self.d_lr_ratio}")
        for name in ("ema_decay", "adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise InvalidArgument(name, f"must be in [0, 1), got {getattr(self, name)}")
        FewStepProcess.vp(self.num_steps, self.beta_min, self.beta_max)  # validates beta_min / beta_max

    @property
    def is_points(self) -> bool:
        return len(self.sample_shape) == 1


class DDGANModel(GenerativeModel):
    """Generator, time-conditioned discriminator (kept to resume training) and the generator's EMA (samples)."""

    output_kind: ClassVar[str] = "image"

    def __init__(self, config: DDGANConfig, context: BuildContext) -> None:
        self.config = config
        self.context = context
        self.process = FewStepProcess.vp(config.num_steps, config.beta_min, config.beta_max)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(INIT_SEED)
            self.G, self.D = build_networks(
                config.sample_shape, z_dim=config.z_dim, base_channels=config.base_channels,
                channel_mults=config.channel_mults, width=config.width, num_layers=config.num_layers, emb_dim=config.emb_dim,
                fourier_octaves=config.fourier_octaves,
            )
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval()
        self.train_steps = 0
        self.device = torch.device("cpu")

    def _latent(self, batch: int) -> torch.Tensor | None:
        return torch.randn(batch, self.config.z_dim, device=self.device) if self.config.z_dim else None

    def train(
        self, dataset: Dataset, options: TrainOptions, progress: Callable[[TrainProgress], None] | None = None
    ) -> TrainResult:
        """Adversarial training of every denoising step at once; seeded by ``options.seed`` (deterministic on a CPU)."""
        cfg, proc = self.config, self.process
        check_dataset(dataset, cfg.sample_shape, "ddgan")
        check_options(options)
        self.to(options.device)
        data = dataset.data.to(torch.float32) / cfg.data_scale  # [N, ...], on the CPU
        betas = (cfg.adam_beta1, cfg.adam_beta2)
        opt_g = torch.optim.Adam(self.G.parameters(), lr=options.learning_rate, betas=betas)
        opt_d = torch.optim.Adam(self.D.parameters(), lr=options.learning_rate * cfg.d_lr_ratio, betas=betas)
        log = LossLog(options.steps, ("d", "g"), progress)
        r1_last = 0.0
        G, D = self.G.train(), self.D.train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(options.seed)
            batches = index_batches(len(data), options.batch_size, torch.Generator().manual_seed(options.seed))
            for step in range(1, options.steps + 1):
                x0 = data[next(batches)].to(self.device)
                b = x0.shape[0]
                t = torch.randint(1, cfg.num_steps + 1, (b,), device=self.device)  # [B] in 1..T
                x_prev, x_t = proc.q_sample_pair(x0, t, torch.randn_like(x0), torch.randn_like(x0))
                # -- discriminator: real (x_{t-1}, x_t) against (posterior sample from G's x_0, x_t)
                do_r1 = cfg.r1_gamma > 0 and step % cfg.r1_interval == 0
                x_prev.requires_grad_(do_r1)
                D.requires_grad_(True)
                real_logits = D(x_prev, x_t, t)
                with torch.no_grad():
                    fake_prev = proc.posterior_sample(G(x_t, t, self._latent(b)), x_t, t, torch.randn_like(x0))
                d_loss = d_loss_nonsaturating(real_logits, D(fake_prev, x_t, t))
                total = d_loss
                if do_r1:
                    r1 = r1_penalty(real_logits, x_prev)
                    total = total + r1 * (cfg.r1_gamma / 2 * cfg.r1_interval)
                    r1_last = float(r1.detach())
                opt_d.zero_grad(set_to_none=True)
                total.backward()
                opt_d.step()
                # -- generator: fresh z and posterior noise on the same x_t
                D.requires_grad_(False)
                fake_prev = proc.posterior_sample(G(x_t, t, self._latent(b)), x_t, t, torch.randn_like(x0))
                g_loss = g_loss_nonsaturating(D(fake_prev, x_t, t))
                opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                opt_g.step()
                self.train_steps += 1
                ema_update(self.G_ema, G, ema_decay_at(self.train_steps, cfg.ema_decay))
                log.add(step, options.learning_rate, d=float(d_loss.detach()), g=float(g_loss.detach()))
        D.requires_grad_(True)
        G.eval()
        D.eval()
        return TrainResult(losses=log.losses, extra={"d_losses": log.curves["d"], "g_losses": log.curves["g"],
                                                     "r1_last": r1_last, "log_every": log.every, "train_steps": self.train_steps})

    @property
    def capabilities(self) -> Capabilities:
        """Unconditional, exactly ``num_steps`` trained steps; naming the family as the sampler is allowed."""
        n = self.config.num_steps
        return Capabilities(output_kind=self.output_kind, sample_shape=self.config.sample_shape, samplers=("ddgan",),
                            min_steps=n, max_steps=n, default_steps=n)

    def sample(self, request: SampleRequest, callback: StepCallback | None = None) -> torch.Tensor:
        """x_T from each sample's seed, then T generator steps (one StepEvent each); deterministic per seed."""
        cfg, proc = self.config, self.process
        self.capabilities.check(request)
        steps = cfg.num_steps
        noise = NoiseSource(request.seeds, self.device)
        x = noise.randn(*cfg.sample_shape)  # [N, ...] x_T, the first draw of each seed
        with torch.no_grad():
            for i, step in enumerate(range(steps, 0, -1)):
                t = torch.full((x.shape[0],), step, dtype=torch.long, device=self.device)
                z = noise.randn(cfg.z_dim) if cfg.z_dim else None
                x0 = self.G_ema(x, t, z)
                x = proc.posterior_sample(x0, x, t, noise.randn_like(x) if step > 1 else None)
                preview = self._output(x0) if request.preview_every and (i + 1) % request.preview_every == 0 else None
                report_step(callback, StepEvent(i + 1, steps, preview))
        return self._output(x)

    def _output(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.config.data_scale
        return x.clamp(-1.0, 1.0) if self.output_kind == "image" else x

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"G": self.G, "D": self.D, "G_ema": self.G_ema}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``G.*``, ``D.*`` (to resume training), ``G_ema.*`` (sampled from) and ``train_steps``."""
        return modules_state_dict(self._modules(), {"train_steps": torch.tensor([self.train_steps], dtype=torch.int64)})

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        load_modules_state_dict(self._modules(), tensors)
        if "train_steps" in tensors:
            self.train_steps = int(tensors["train_steps"].reshape(-1)[0])

    def to(self, device: torch.device | str) -> DDGANModel:
        self.device = torch.device(device)
        for module in self._modules().values():
            module.to(self.device)
        return self

    def describe(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "family": DDGANFamily.name,
            "output_kind": self.output_kind,
            "sample_shape": list(cfg.sample_shape),
            "parameters": sum(p.numel() for p in self.G.parameters()),
            "discriminator_parameters": sum(p.numel() for p in self.D.parameters()),
            "steps": cfg.num_steps,
            "default_steps": cfg.num_steps,
            "schedule": describe_schedule(self.process),
            "z_dim": cfg.z_dim,
            "params": {},
            "train_steps": self.train_steps,
        }


class DDGANPointsModel(DDGANModel):
    """The same model over [N, D] points: outputs are not clamped."""

    output_kind: ClassVar[str] = "points"


class DDGANFamily(ModelFamily):
    """Denoising Diffusion GAN: T (default 4) adversarially trained denoising steps; images or 2D points."""

    name: ClassVar[str] = "ddgan"
    config_class: ClassVar[type[ModelConfig]] = DDGANConfig
    description: ClassVar[str] = "Denoising Diffusion GAN (Xiao et al. 2022): a few GAN-learned denoising steps (T=4)"

    def build(self, config: ModelConfig, context: BuildContext) -> DDGANModel:
        if not isinstance(config, DDGANConfig):
            raise InvalidArgument("config", f"family 'ddgan' needs a DDGANConfig, got {type(config).__name__}")
        return (DDGANPointsModel if config.is_points else DDGANModel)(config, context)

    def default_config(self, dataset: Dataset | None = None) -> DDGANConfig:
        if dataset is None:
            return DDGANConfig()
        if dataset.kind == "points":
            # Unscaled points: the grid's modes stay apart relative to the unit forward noise for longer.
            return DDGANConfig(sample_shape=tuple(dataset.sample_shape), z_dim=8, r1_gamma=0.1)
        _, h, _ = dataset.sample_shape
        return DDGANConfig(sample_shape=tuple(dataset.sample_shape), channel_mults=(1, 2) if h <= 8 else (1, 2, 2))
