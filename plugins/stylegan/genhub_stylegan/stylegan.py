"""The "stylegan" family: config, model (train / sample / weights) and family object.

Networks live in ``networks.py`` and ``layers.py``, the adversarial loop in ``training.py``; this module wires
them together: the EMA generator, w-average truncation, style mixing and seeded noise for sampling.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch

from hub.errors import InvalidArgument
from hub.model import (BuildContext, Capabilities, GenerativeModel, ModelConfig, ModelFamily, NoiseSource, Param,
                       SampleRequest, StepCallback, StepEvent, TrainOptions, TrainProgress, TrainResult, report_step)
from hub.training import ModuleWeights, check_dataset, ema_decay_at, ema_update

from genhub_stylegan.augment import parse_policy
from genhub_stylegan.networks import NOISE_MODES, build_style_networks
from genhub_stylegan.training import AdversarialSetup, train_adversarial

if TYPE_CHECKING:
    from hub.datasets import Dataset

INIT_SEED = 0  # a fresh build's weights are a function of the config alone
MAX_PACK = 16  # PacGAN used 2-4; more makes D's first layer wide for nothing

# SampleRequest.params this family reads, with what they do (mix_layer's upper bound, num_ws, comes from the model).
SAMPLE_PARAMS: dict[str, Param] = {
    "mix_seed": Param(int, "style mixing: layers >= mix_layer take their w from this seed's latent (the z that seed "
                           "would give as a sample), the same source for every sample", min=0),
    "mix_layer": Param(int, "the first layer styled by mix_seed (default num_ws // 2: coarse from the sample's seed, "
                            "fine from mix_seed)", min=0),
    "noise_mode": Param(str, "per-layer noise inputs: the stored fixed maps, drawn from each sample's seed, or zero",
                        default="const", choices=tuple(NOISE_MODES)),
    "truncation_cutoff": Param(int, "truncation applies to layers below it only (default: every layer)"),
}


@dataclass
class StyleGANConfig(ModelConfig):
    """StyleGAN2-style networks, regularisation and training dynamics (steps, batch, lr, seed: TrainOptions)."""

    sample_shape: tuple[int, ...] = (1, 16, 16)  # [C, R, R] images (R a power of 2 >= 4) or [D] points
    z_dim: int = 64
    w_dim: int = 64
    mapping_layers: int = 4
    mapping_lr_mul: float = 0.01  # the mapping network learns 100x slower (paper)
    w_avg_beta: float = 0.995  # decay of the tracked w average (the truncation centre)
    channel_base: int = 256  # images: feature maps at resolution r = min(channel_max, channel_base // r)
    channel_max: int = 64
    width: int = 128  # points: width of the synthesis and discriminator MLPs
    num_layers: int = 4  # points: modulated layers in G, hidden layers in D
    mbstd_group: int = 4  # discriminator minibatch-std group size
    d_fourier_octaves: int = 0  # points: D also sees sin/cos of the coordinates at 2^0..2^(k-1) (hub.layers); 0: raw
    g_fourier_octaves: int = 0  # the mapping network also sees sin/cos of the normalised z at 2^0..2^(k-1); 0: raw z
    pack: int = 1  # PacGAN: D judges this many samples at once (the batch size must be a multiple); 1: one at a time
    r1_gamma: float = 0.1  # R1 weight; 0 disables it
    r1_interval: int = 16  # lazy R1: every k-th discriminator step
    mixing_prob: float = 0.9  # style-mixing regularisation: fraction of training batches with two latents
    augment: str = ""  # DiffAugment policy: comma-separated subset of "color,translation,cutout"
    ema_decay: float = 0.999  # sampling uses an EMA of the generator
    adam_beta1: float = 0.0
    adam_beta2: float = 0.99
    d_lr_ratio: float = 1.0  # discriminator lr = ratio x TrainOptions.learning_rate
    default_truncation: float = 1.0  # psi when the request leaves truncation unset

    def __post_init__(self) -> None:
        self.sample_shape = tuple(self.sample_shape)
        if len(self.sample_shape) == 3:
            c, h, w = self.sample_shape
            if h != w or h < 4 or h & (h - 1) or c < 1:
                raise InvalidArgument("sample_shape", f"images must be [C, R, R] with R a power of 2 >= 4, got "
                                      f"{list(self.sample_shape)}; resize the data or use digits (8) / digits16 (16)")
        elif len(self.sample_shape) != 1 or self.sample_shape[0] < 1:
            raise InvalidArgument("sample_shape", f"need [C, R, R] images or [D] points, got {list(self.sample_shape)}")
        self.check_at_least_one("z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max", "width", "num_layers",
                                "mbstd_group", "r1_interval")
        for name in ("d_fourier_octaves", "g_fourier_octaves"):
            if not 0 <= getattr(self, name) <= 16:
                raise InvalidArgument(name, f"must be between 0 and 16, got {getattr(self, name)}")
        if not 1 <= self.pack <= MAX_PACK:
            raise InvalidArgument("pack", f"must be between 1 (no packing) and {MAX_PACK}, got {self.pack}")
        if not 0 < self.mapping_lr_mul <= 1:
            raise InvalidArgument("mapping_lr_mul", f"must be in (0, 1], got {self.mapping_lr_mul}")
        self.check_fractions("w_avg_beta", "ema_decay", "adam_beta1", "adam_beta2")
        if not 0.0 <= self.mixing_prob <= 1.0:
            raise InvalidArgument("mixing_prob", f"must be in [0, 1], got {self.mixing_prob}")
        if self.r1_gamma < 0 or self.d_lr_ratio <= 0:
            raise InvalidArgument("r1_gamma", f"need r1_gamma >= 0 and d_lr_ratio > 0, got {self.r1_gamma}, {self.d_lr_ratio}")
        parse_policy(self.augment)


class StyleGANModel(ModuleWeights, GenerativeModel):
    """Generator, discriminator (kept to resume training) and the generator's EMA, which samples."""

    def __init__(self, config: StyleGANConfig, context: BuildContext) -> None:
        self.config = config
        self.context = context
        cfg = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(INIT_SEED)
            self.G, self.D = build_style_networks(
                cfg.sample_shape, z_dim=cfg.z_dim, w_dim=cfg.w_dim, mapping_layers=cfg.mapping_layers,
                mapping_lr_mul=cfg.mapping_lr_mul, w_avg_beta=cfg.w_avg_beta, channel_base=cfg.channel_base,
                channel_max=cfg.channel_max, width=cfg.width, num_layers=cfg.num_layers, mbstd_group=cfg.mbstd_group,
                d_fourier_octaves=cfg.d_fourier_octaves, pack=cfg.pack, g_fourier_octaves=cfg.g_fourier_octaves,
            )
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval()
        self.train_steps = 0
        self.device = torch.device("cpu")

    # ---- training -------------------------------------------------------------------------------

    def _fakes(self, batch: int) -> torch.Tensor:
        """Training fakes [B, ...] from fresh latents, two of them (style mixing) with probability mixing_prob."""
        z = torch.randn(batch, self.config.z_dim, device=self.device)
        if self.config.mixing_prob > 0 and float(torch.rand(())) < self.config.mixing_prob:
            cut = int(torch.randint(1, self.G.num_ws, ()))
            return self.G(z, torch.randn_like(z), cut, track_w_avg=True)
        return self.G(z, track_w_avg=True)

    def _after_step(self) -> None:
        self.train_steps += 1
        ema_update(self.G_ema, self.G, ema_decay_at(self.train_steps, self.config.ema_decay))

    def train(
        self, dataset: Dataset, options: TrainOptions, progress: Callable[[TrainProgress], None] | None = None
    ) -> TrainResult:
        """Non-saturating loss, lazy R1, style mixing, optional DiffAugment, EMA; seeded by ``options.seed``."""
        cfg = self.config
        check_dataset(dataset, cfg.sample_shape, "stylegan", min_items=2)
        if options.batch_size % cfg.pack:
            raise InvalidArgument("batch_size", f"the discriminator packs {cfg.pack} samples (config pack), so the batch "
                                                f"size must be a multiple of {cfg.pack}, got {options.batch_size}")
        self.to(options.device)
        setup = AdversarialSetup(
            generator=self.G, discriminator=self.D, generate=self._fakes, betas=(cfg.adam_beta1, cfg.adam_beta2),
            d_lr_ratio=cfg.d_lr_ratio, r1_gamma=cfg.r1_gamma, r1_interval=cfg.r1_interval,
            augment=parse_policy(cfg.augment), after_step=self._after_step,
        )
        result = train_adversarial(setup, dataset.data.to(torch.float32), options, self.device, progress)
        result.extra["train_steps"] = self.train_steps
        return result

    # ---- sampling -------------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        """One pass, unconditional; truncation and the parameters in ``SAMPLE_PARAMS``."""
        params = {**SAMPLE_PARAMS, "mix_layer": replace(SAMPLE_PARAMS["mix_layer"], max=self.G.num_ws)}
        return Capabilities(sample_shape=self.config.sample_shape, samplers=("stylegan",),
                            truncation=True, default_truncation=self.config.default_truncation, params=params)

    def mapped_ws(self, request: SampleRequest, noise: NoiseSource) -> torch.Tensor:
        """ws [N, num_ws, w_dim] for a request: mapping, style mixing, then truncation towards w_avg."""
        cfg, G, caps = self.config, self.G_ema, self.capabilities
        ws = G.ws(noise.randn(cfg.z_dim))  # the first draw of each seed: its z
        mix_seed, mix_layer = caps.param(request, "mix_seed"), caps.param(request, "mix_layer")
        if mix_layer is not None and mix_seed is None:
            raise InvalidArgument("params[mix_layer]", "style mixing needs params[mix_seed] too (the seed of the second style)")
        if mix_seed is not None:
            mix_layer = G.num_ws // 2 if mix_layer is None else mix_layer
            z_mix = NoiseSource([mix_seed], self.device).randn(cfg.z_dim).expand(len(noise), -1)  # [N, z_dim]
            ws = torch.cat([ws[:, :mix_layer], G.ws(z_mix)[:, mix_layer:]], dim=1)
        psi = cfg.default_truncation if request.truncation is None else float(request.truncation)
        cutoff = caps.param(request, "truncation_cutoff")
        cutoff = G.num_ws if cutoff is None else max(0, min(cutoff, G.num_ws))
        if psi != 1.0 and cutoff > 0:
            w_avg = G.mapping.w_avg[None, None]  # [1, 1, w_dim]
            ws = torch.cat([w_avg + psi * (ws[:, :cutoff] - w_avg), ws[:, cutoff:]], dim=1)
        return ws

    def sample(self, request: SampleRequest, callback: StepCallback | None = None) -> torch.Tensor:
        """[N, C, R, R] in [-1, 1] (or [N, D] points) in one pass; sample i depends on seeds[i] and the params only."""
        self.capabilities.check(request)
        mode = self.capabilities.param(request, "noise_mode")
        noise = NoiseSource(request.seeds, self.device)
        with torch.no_grad():
            ws = self.mapped_ws(request, noise)
            out = self.G_ema.synthesis(ws, self.G_ema.noise_inputs(mode, noise.randn))  # noise drawn after z
        if self.output_kind == "image":
            out = out.clamp(-1.0, 1.0)
        report_step(callback, StepEvent(1, 1, out if request.preview_every else None))
        return out

    # ---- weights --------------------------------------------------------------------------------

    def _modules(self) -> dict[str, torch.nn.Module]:
        """``G.*``, ``D.*`` (to resume training), ``G_ema.*`` (sampled from; w_avg included); ``train_steps`` beside."""
        return {"G": self.G, "D": self.D, "G_ema": self.G_ema}

    def describe(self) -> dict[str, Any]:
        """The capabilities, with the network sizes and the style space."""
        return {**super().describe(), "family": StyleGANFamily.name, "parameters": self.parameter_count("G"),
                "discriminator_parameters": self.parameter_count("D"), "num_ws": self.G.num_ws, "z_dim": self.config.z_dim,
                "w_dim": self.config.w_dim, "train_steps": self.train_steps}


class StyleGANFamily(ModelFamily, name="stylegan", config_class=StyleGANConfig, model_class=StyleGANModel):
    """StyleGAN2-style GAN (Karras et al. 2020) for small images, with an MLP variant for 2D points."""

    description: ClassVar[str] = ("StyleGAN2-style GAN: mapping network, modulated convolutions, noise inputs, "
                                  "lazy R1, EMA; truncation and style mixing (MLP variant for 2D points)")

    def config_for(self, dataset: Dataset) -> StyleGANConfig:
        if dataset.kind == "points":
            # stylegan-grid25's recipe (23/25 modes on the 25-grid; the paper's settings, z 16 and raw inputs, drew a
            # blanket over it): z on a circle (z_dim 2, normalised), Fourier features of z and of the points, and a
            # mapping network at the full learning rate.
            return StyleGANConfig(sample_shape=tuple(dataset.sample_shape), z_dim=2, w_dim=64, r1_gamma=0.1,
                                  mixing_prob=0.0, mbstd_group=4, mapping_lr_mul=1.0, g_fourier_octaves=6,
                                  d_fourier_octaves=6)
        # Tuned on digits16 for a CPU budget of a few minutes: narrower maps, a short mapping network, less mixing.
        return StyleGANConfig(sample_shape=tuple(dataset.sample_shape), channel_max=32, mapping_layers=2, mixing_prob=0.5)
