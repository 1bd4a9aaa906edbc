"""The "ddgan" family: Denoising Diffusion GAN (Xiao et al. 2022, "Tackling the Generative Learning Trilemma").

A few large denoising steps (T = 4 by default). The generator predicts x_0 from (x_t, t, z) and reaches x_{t-1}
through the diffusion posterior q(x_{t-1} | x_t, x_0); a time-conditioned discriminator tells real pairs
(x_{t-1}, x_t) from generated ones. Non-saturating loss with (lazy) R1; an EMA of the generator samples.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch

from hub.errors import InvalidArgument
from hub.model import (BuildContext, Capabilities, GenerativeModel, ModelConfig, ModelFamily, NoiseSource, SampleCost,
                       SampleRequest,
                       StepCallback, StepEvent, TrainOptions, TrainProgress, TrainResult)
from hub.training import (GAN_HINT, LossLog, ModuleWeights, check_dataset, check_gan_options, discriminator_step, ema_decay_at,
                          ema_update, g_loss_nonsaturating, index_batches, optimizer_step)
from hub.stepping import SteppedModel

from genhub_ddgan.networks import build_networks
from genhub_ddgan.process import FewStepProcess, describe_schedule
from genhub_ddgan.stepping import FewStepTrajectory, concat_z

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
    time_power: float = 1.0  # step k at time (k / T)^power of the VP process; > 1: more steps at low noise
    z_dim: int = 32  # latent per step: makes each denoising step a multimodal (non-Gaussian) distribution
    emb_dim: int = 64  # time (and z) embedding width
    base_channels: int = 32  # images: UNet / discriminator width of the first level
    channel_mults: tuple[int, ...] = (1, 2)  # images: one level per entry, halving H and W between levels
    width: int = 128  # points: MLP width
    num_layers: int = 3  # points: residual blocks in G, hidden layers in D
    fourier_octaves: int = 0  # points: G (and D, see fourier_in_d) also see sin/cos of the coordinates (hub.layers)
    fourier_in_d: bool = True  # points: False keeps the discriminator on raw coordinates (features in G only)
    data_scale: float = 1.0  # the model works on data / data_scale
    r1_gamma: float = 0.05  # R1 weight on real x_{t-1}; 0 disables it
    r1_interval: int = 4  # lazy R1: every k-th discriminator step, weighted by k
    ema_decay: float = 0.999  # the EMA's cap; it warms up as hub.training.ema_decay_at says
    ema_power: float = 8.0  # the warm-up's power-function profile: smaller averages a longer share of the run
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
        self.check_at_least_one("emb_dim", "base_channels", "width", "num_layers", "r1_interval")
        if not 0 <= self.fourier_octaves <= 16:
            raise InvalidArgument("fourier_octaves", f"must be between 0 and 16, got {self.fourier_octaves}")
        if self.z_dim < 0:
            raise InvalidArgument("z_dim", f"must be >= 0 (0: a deterministic generator), got {self.z_dim}")
        if not self.data_scale > 0 or self.r1_gamma < 0 or not self.d_lr_ratio > 0:
            raise InvalidArgument("data_scale", f"need data_scale > 0, r1_gamma >= 0, d_lr_ratio > 0; got "
                                  f"{self.data_scale}, {self.r1_gamma}, {self.d_lr_ratio}")
        self.check_fractions("ema_decay", "adam_beta1", "adam_beta2")
        if not 0 <= self.ema_power <= 64:
            raise InvalidArgument("ema_power", f"must be between 0 (a plain average of every step) and 64, "
                                  f"got {self.ema_power}")
        FewStepProcess.vp(self.num_steps, self.beta_min, self.beta_max, self.time_power)  # validates beta_min / beta_max



class DDGANModel(ModuleWeights, SteppedModel, GenerativeModel):
    """Generator, time-conditioned discriminator (kept to resume training) and the generator's EMA (samples)."""

    def __init__(self, config: DDGANConfig, context: BuildContext) -> None:
        self.config = config
        self.context = context
        self.process = FewStepProcess.vp(config.num_steps, config.beta_min, config.beta_max, config.time_power)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(INIT_SEED)
            self.G, self.D = build_networks(
                config.sample_shape, z_dim=config.z_dim, base_channels=config.base_channels,
                channel_mults=config.channel_mults, width=config.width, num_layers=config.num_layers, emb_dim=config.emb_dim,
                fourier_octaves=config.fourier_octaves, d_fourier_octaves=config.fourier_octaves if config.fourier_in_d else 0,
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
        check_dataset(dataset, cfg.sample_shape, "ddgan", min_items=2)
        check_gan_options(options)
        self.to(options.device)
        data = dataset.data.to(torch.float32) / cfg.data_scale  # [N, ...], on the CPU
        betas = (cfg.adam_beta1, cfg.adam_beta2)
        opt_g = torch.optim.Adam(self.G.parameters(), lr=options.learning_rate, betas=betas)
        opt_d = torch.optim.Adam(self.D.parameters(), lr=options.learning_rate * cfg.d_lr_ratio, betas=betas)
        log = LossLog(options.steps, ("d", "g"), progress, GAN_HINT)
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
                d_loss, r1 = discriminator_step(opt_d, real_logits, D(fake_prev, x_t, t), x_prev if do_r1 else None,
                                                cfg.r1_gamma / 2 * cfg.r1_interval)
                r1_last = r1_last if r1 is None else r1
                # -- generator: fresh z and posterior noise on the same x_t
                D.requires_grad_(False)
                fake_prev = proc.posterior_sample(G(x_t, t, self._latent(b)), x_t, t, torch.randn_like(x0))
                g_loss = g_loss_nonsaturating(D(fake_prev, x_t, t))
                optimizer_step(opt_g, g_loss)
                self.train_steps += 1
                ema_update(self.G_ema, G, ema_decay_at(self.train_steps, cfg.ema_decay, cfg.ema_power))
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
        return Capabilities(sample_shape=self.config.sample_shape, samplers=("ddgan",),
                            min_steps=n, max_steps=n, default_steps=n)

    def sample(self, request: SampleRequest, callback: StepCallback | None = None) -> torch.Tensor:
        """x_T from each sample's seed, then T generator steps (one StepEvent each); deterministic per seed."""
        return self.sample_alone(request, callback)

    def sample_cost(self, request: SampleRequest) -> SampleCost:
        return SampleCost(self.config.num_steps, request.num_samples, math.prod(self.config.sample_shape))

    def begin(self, request: SampleRequest) -> FewStepTrajectory:
        cfg = self.config
        self.capabilities.check(request)
        steps = cfg.num_steps
        noise = NoiseSource(request.seeds, self.device)
        x_T = noise.randn(*cfg.sample_shape)  # [N, ...], the first draw of each seed
        return FewStepTrajectory(request, noise, x_T, steps, cfg.z_dim, self._move, self._output)

    def _move(self, x0: torch.Tensor, x: torch.Tensor, t: torch.Tensor, noise: NoiseSource) -> torch.Tensor:
        return self.process.posterior_sample(x0, x, t, noise.randn_like(x) if int(t[0]) > 1 else None)

    def network_pass(self, x: torch.Tensor, t: torch.Tensor, conds: list[Any], rows: list[int]) -> torch.Tensor:
        return self.G_ema(x, t, concat_z(conds))  # [R, ...] x_0 predictions

    def _output(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.config.data_scale
        return x.clamp(-1.0, 1.0) if self.output_kind == "image" else x

    def _modules(self) -> dict[str, torch.nn.Module]:
        """``G.*``, ``D.*`` (to resume training), ``G_ema.*`` (sampled from); ``train_steps`` beside them."""
        return {"G": self.G, "D": self.D, "G_ema": self.G_ema}

    def describe(self) -> dict[str, Any]:
        """The capabilities, with the network sizes and the schedule."""
        return {**super().describe(), "family": DDGANFamily.name, "parameters": self.parameter_count("G"),
                "discriminator_parameters": self.parameter_count("D"), "schedule": describe_schedule(self.process),
                "z_dim": self.config.z_dim, "train_steps": self.train_steps}


class DDGANFamily(ModelFamily, name="ddgan", config_class=DDGANConfig, model_class=DDGANModel):
    """Denoising Diffusion GAN (Xiao et al. 2022): a few GAN-learned denoising steps (T=4)

    Denoising Diffusion GAN: T (default 4) adversarially trained denoising steps; images or 2D points.
    """

    def config_for(self, dataset: Dataset) -> DDGANConfig:
        if dataset.kind == "points":
            # Unscaled points: the grid's modes stay apart relative to the unit forward noise for longer.
            return DDGANConfig(sample_shape=tuple(dataset.sample_shape), z_dim=8, r1_gamma=0.1)
        _, h, _ = dataset.sample_shape
        return DDGANConfig(sample_shape=tuple(dataset.sample_shape), channel_mults=(1, 2) if h <= 8 else (1, 2, 2))
