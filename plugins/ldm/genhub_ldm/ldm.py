"""The "ldm" family: diffusion in the latent space of a registered "vae" version, conditioned on text.

Latent diffusion (Rombach et al. 2022) at a size that trains on a CPU. The autoencoder is another
registry version (``autoencoder`` in the config; ``genhub train ldm --parent vae-shapes:1`` pins it and
records it as the denoiser's parent) and stays frozen. The denoiser is a UNet over scaled latents with
cross-attention to the tokens of a text encoder chosen by name from those plugins register
(``register_text_encoders``). Sampling runs any registered sampler (the DDPM plugin's ``ddpm`` and ``ddim``)
in latent space, then decodes; streaming previews decode the sampler's current x0 estimate.

Conditioning is always text: a prompt, or a class label turned into its class name (the shapes dataset's
class names are its captions, "a red circle, top left"). Training drops the text with probability
``cond_dropout`` (the empty prompt is the unconditional input), so classifier-free guidance works:
``guidance_scale`` g gives uncond + g * (cond - uncond), computed in one batched forward pass.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from hub.errors import FailedPrecondition, InvalidArgument
from hub.model import (BuildContext, Capabilities, GenerativeModel, ModelConfig, ModelFamily, NoiseSource, SampleCost,
                       SampleRequest,
                       StepCallback, StepEvent, TrainOptions, TrainProgress, TrainResult)
from hub.training import (LR_DECAYS, LossLog, ModuleWeights, check_options, ema_decay_at, ema_update, index_batches, lr_at,
                          min_snr_weight, optimizer_step)
from hub.sampling import PREDICTION_TYPES
from hub.stepping import DiffusionTrajectory, SteppedModel

from genhub_ddpm.schedule import BETA_SCHEDULES, make_process
from genhub_ldm.unet import LatentUNet
from genhub_ldm.vae import VAEModel

if TYPE_CHECKING:
    from hub.datasets import Dataset

INIT_SEED = 0


@dataclass
class LDMConfig(ModelConfig):
    """Autoencoder reference, denoiser shape, text conditioning, process and sampling defaults."""

    autoencoder: str = "vae-shapes"  # registry reference of a "vae" version; `--parent` pins name:version
    latent_shape: tuple[int, ...] = (4, 8, 8)  # [C, H, W] of the autoencoder's latents
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 1
    heads: int = 4
    context_dim: int = 64  # width of the text encoder's tokens
    text_encoder: str = "vocab"  # a registered text encoder (`genhub plugins` lists who registers which)
    text_settings: dict[str, Any] | None = None  # what the encoder fitted on the training captions (set by training)
    class_names: tuple[str, ...] = ()  # class label i is conditioned on the text class_names[i]
    cond_dropout: float = 0.1  # share of training prompts replaced by the empty prompt (enables guidance)
    num_timesteps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction_type: str = "epsilon"
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    snr_gamma: float = 0.0  # > 0: Min-SNR-gamma loss weighting (Hang et al. 2023; 5 in the paper); 0: plain MSE
    lr_warmup: int = 0  # steps of linear learning-rate warm-up from 0
    lr_decay: str = "constant"  # after the warm-up: one of LR_DECAYS, down to 0 at the run's last step
    default_sampler: str = "ddim"
    default_steps: int = 50
    default_guidance: float = 3.0  # used when a request is conditioned and names no guidance_scale
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes, e.g. the autoencoder's scale factor

    def __post_init__(self) -> None:
        self.latent_shape = tuple(self.latent_shape)
        self.channel_mults = tuple(self.channel_mults)
        self.class_names = tuple(self.class_names)
        if len(self.latent_shape) != 3 or min(self.latent_shape) < 1:
            raise InvalidArgument("latent_shape", f"must be [C, H, W] of positive sizes, got {list(self.latent_shape)}")
        down = 2 ** (len(self.channel_mults) - 1)
        if not self.channel_mults or self.latent_shape[1] % down or self.latent_shape[2] % down:
            raise InvalidArgument("channel_mults", f"{len(self.channel_mults)} levels need latent H and W divisible by {down}")
        self.check_at_least_one("base_channels", "num_res_blocks", "heads", "context_dim")
        if self.context_dim % self.heads:
            raise InvalidArgument("heads", f"context_dim={self.context_dim} must be divisible by heads={self.heads}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise InvalidArgument("cond_dropout", f"must be in [0, 1), got {self.cond_dropout}")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise InvalidArgument("beta_schedule", f"{self.beta_schedule!r} is not one of {list(BETA_SCHEDULES)}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise InvalidArgument("prediction_type", f"{self.prediction_type!r} is not one of {list(PREDICTION_TYPES)}")
        if not 1 <= self.default_steps <= self.num_timesteps:
            raise InvalidArgument("default_steps", f"must be between 1 and num_timesteps={self.num_timesteps}, got {self.default_steps}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InvalidArgument("ema_decay", f"must be in [0, 1), got {self.ema_decay}")
        if not self.snr_gamma >= 0.0:
            raise InvalidArgument("snr_gamma", f"must be >= 0 (0: off), got {self.snr_gamma}")
        if self.lr_warmup < 0:
            raise InvalidArgument("lr_warmup", f"must be >= 0 steps, got {self.lr_warmup}")
        if self.lr_decay not in LR_DECAYS:
            raise InvalidArgument("lr_decay", f"{self.lr_decay!r} is not one of {list(LR_DECAYS)}")


class Denoiser(nn.Module):
    """The trained part: text encoder + latent UNet (the EMA copy covers both)."""

    def __init__(self, config: LDMConfig, text: nn.Module) -> None:
        super().__init__()
        self.text = text
        self.unet = LatentUNet(
            config.latent_shape[0], config.base_channels, config.channel_mults, config.num_res_blocks, config.context_dim, config.heads
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, context, mask)


class LDMModel(ModuleWeights, SteppedModel, GenerativeModel):
    def __init__(self, config: LDMConfig, context: BuildContext) -> None:
        if context.text_encoders is None:
            raise FailedPrecondition("the ldm family needs the hub's text encoders (BuildContext.text_encoders)")
        self.config = config
        self.context = context
        self.encoder_spec = context.text_encoders.get(config.text_encoder)  # NotFound names those registered
        self.process = make_process(config.beta_schedule, config.num_timesteps, config.prediction_type, None, config.beta_start, config.beta_end)
        self.net: Denoiser | None = None
        self.ema: Denoiser | None = None
        self._vae: VAEModel | None = None
        self.device = torch.device("cpu")
        self.train_steps = 0
        if config.text_settings is not None:
            self._build_networks(config.text_settings)

    def _build_networks(self, settings: dict[str, Any]) -> None:
        with torch.random.fork_rng(devices=[]):  # weights of a fresh build depend on the config alone
            torch.manual_seed(INIT_SEED)
            self.net = Denoiser(self.config, self.encoder_spec.build(settings, self.config.context_dim)).to(self.device)
        self.ema = copy.deepcopy(self.net).requires_grad_(False).eval()

    def vae(self) -> VAEModel:
        """The frozen autoencoder, loaded (and digest-verified) through the hub on first use."""
        if self._vae is None:
            if self.context.load_version is None:
                raise FailedPrecondition("the ldm family loads its autoencoder through the hub; build it with Hub.build or Hub.load")
            vae = self.context.load_version(self.config.autoencoder)
            if not isinstance(vae, VAEModel):
                raise InvalidArgument("autoencoder", f"{self.config.autoencoder!r} is a {type(vae).__name__}, not a vae version")
            if tuple(vae.config.latent_shape) != self.config.latent_shape:
                raise InvalidArgument(
                    "latent_shape",
                    f"{list(self.config.latent_shape)} does not match {self.config.autoencoder}'s latents "
                    f"{list(vae.config.latent_shape)}; train with --set 'latent_shape={list(vae.config.latent_shape)}'",
                )
            self._vae = vae.to(self.device)
        return self._vae

    # ---- training ---------------------------------------------------------------------------

    def _texts(self, dataset: Dataset) -> list[str]:
        if dataset.captions is not None:
            return list(dataset.captions)
        if dataset.labels is not None and dataset.class_names:
            return [dataset.class_names[int(i)] for i in dataset.labels]
        raise InvalidArgument("dataset", f"{dataset.name!r} has neither captions nor class names to condition on")

    def train(
        self, dataset: Dataset, options: TrainOptions, progress: Callable[[TrainProgress], None] | None = None
    ) -> TrainResult:
        """Denoising loss on the frozen autoencoder's latents, prompts dropped with ``cond_dropout``."""
        check_options(options)
        cfg = self.config
        texts = self._texts(dataset)
        if self.net is None:  # first training: fit the text encoder on the captions, then build
            settings = self.encoder_spec.fit(texts + list(cfg.class_names))
            self.config = cfg = cfg.replace(text_settings=settings)
            self._build_networks(settings)
        assert self.net is not None
        self.to(options.device)
        vae = self.vae()
        if tuple(dataset.sample_shape) != tuple(vae.config.sample_shape):
            raise InvalidArgument("dataset", f"{dataset.name!r} items have shape {list(dataset.sample_shape)}, the autoencoder takes {list(vae.config.sample_shape)}")
        self.config = cfg = cfg.replace(extra={**cfg.extra, "scale_factor": vae.config.scale_factor})
        latents = vae.encode(dataset.data.to(torch.float32)).cpu()  # frozen: encoded once, [N, *latent_shape]
        gen = torch.Generator().manual_seed(options.seed)
        opt = torch.optim.AdamW(self.net.parameters(), lr=options.learning_rate, weight_decay=0.0)
        batches = index_batches(len(dataset), options.batch_size, gen)
        log = LossLog(options.steps, ("loss",), progress)
        started = time.perf_counter()
        self.net.train()
        for step in range(1, options.steps + 1):
            idx = next(batches)
            x0 = latents[idx]
            t = torch.randint(0, cfg.num_timesteps, (x0.shape[0],), generator=gen)
            noise = torch.randn(x0.shape, generator=gen)
            drop = (torch.rand(x0.shape[0], generator=gen) < cfg.cond_dropout).tolist()
            prompts = ["" if d else texts[int(i)] for i, d in zip(idx, drop)]
            x0, t, noise = x0.to(self.device), t.to(self.device), noise.to(self.device)
            context, mask = self.net.text(prompts)
            pred = self.net(self.process.add_noise(x0, noise, t), t, context, mask)
            target = self.process.target(x0, noise, t)
            if cfg.snr_gamma > 0:
                weight = min_snr_weight(self.process.alphas_cumprod, t, cfg.snr_gamma, cfg.prediction_type)
                loss = (weight * (pred - target).pow(2).mean(dim=(1, 2, 3))).mean()
            else:
                loss = F.mse_loss(pred, target)
            lr = lr_at(step, options.steps, options.learning_rate, cfg.lr_warmup, cfg.lr_decay)
            for group in opt.param_groups:
                group["lr"] = lr
            log.add(step, lr, loss=float(loss.detach()))  # a non-finite loss stops before the update
            optimizer_step(opt, loss, self.net.parameters(), cfg.grad_clip)
            self.train_steps += 1
            assert self.ema is not None
            ema_update(self.ema, self.net, ema_decay_at(self.train_steps, cfg.ema_decay))
        self.net.eval()
        return TrainResult(losses=log.losses, extra={"wall_time_s": time.perf_counter() - started, "train_steps": self.train_steps})

    # ---- sampling ---------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        """Any registered sampler; prompts, or class labels turned into class names; guidance."""
        cfg = self.config
        return Capabilities(
            output_kind="image", sample_shape=self._image_shape(), samplers=tuple(self.context.samplers.names()),
            default_sampler=cfg.default_sampler, max_steps=cfg.num_timesteps, default_steps=cfg.default_steps, eta=True,
            num_classes=len(cfg.class_names), prompts=True, guidance=True, default_guidance=cfg.default_guidance,
        )

    def _image_shape(self) -> tuple[int, ...]:
        """[C, H, W] of the decoded images: the autoencoder's, once loaded (else unknown here: ())."""
        return tuple(self._vae.config.sample_shape) if self._vae is not None else ()

    def prompts_for(self, request: SampleRequest) -> list[str] | None:
        """One text per sample (prompts, or class labels turned into class names), or None: unconditional."""
        if request.prompts is not None:
            return list(request.prompts)
        if request.class_labels is not None:
            return [self.config.class_names[c] for c in request.class_labels]
        return None

    def _plan(self, request: SampleRequest) -> tuple[list[str] | None, float | None, str, int]:
        """(prompts, guidance, sampler, steps) of a checked request; guidance None: plain passes."""
        if self.ema is None:
            raise FailedPrecondition("this ldm has not been trained yet (no text encoder settings); train it first")
        self.capabilities.check(request)
        prompts = self.prompts_for(request)
        guidance = request.guidance_scale
        if guidance is None and prompts is not None:
            guidance = self.config.default_guidance
        name = request.sampler or self.config.default_sampler
        sampler = self.context.samplers.get(name)  # NotFound lists the registered samplers
        steps = request.steps if request.steps is not None else (
            self.config.default_steps if name == self.config.default_sampler else min(sampler.default_steps, self.config.num_timesteps)
        )
        sampler.check_steps(steps, self.process)
        return prompts, None if prompts is None or guidance == 1.0 else guidance, name, steps

    def sample_cost(self, request: SampleRequest) -> SampleCost:
        prompts, guidance, _, steps = self._plan(request)
        rows = request.num_samples * (2 if guidance is not None else 1)
        return SampleCost(passes=steps, rows=rows, values=math.prod(self.config.latent_shape))

    def can_step(self, request: SampleRequest) -> bool:
        name = request.sampler or self.config.default_sampler
        return name not in self.context.samplers or self.context.samplers.get(name).can_step()

    def sample(self, request: SampleRequest, callback: StepCallback | None = None) -> torch.Tensor:
        if self.can_step(request):
            return self.sample_alone(request, callback)
        prompts, guidance, name, steps = self._plan(request)  # a sampler with only a whole loop
        vae = self.vae()
        noise = NoiseSource(request.seeds, self.device)
        x_T = noise.randn(*self.config.latent_shape)
        context, mask = self._context(prompts, guidance, request.num_samples)

        def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if guidance is None:
                return self.network_pass(x, t, [(context, mask)], [x.shape[0]])
            cond, uncond = self.network_pass(torch.cat([x, x]), torch.cat([t, t]), [(context, mask)], [2 * x.shape[0]]).chunk(2)
            return uncond + guidance * (cond - uncond)

        def decode_previews(event: StepEvent) -> bool | None:
            if callback is None:
                return None
            preview = vae.decode(event.preview) if event.preview is not None else None
            return callback(StepEvent(event.step, event.total, preview))

        with torch.no_grad():
            latents = self.context.samplers.get(name).sample(
                model_fn, self.process, x_T, steps=steps, noise=noise, eta=request.eta,
                callback=decode_previews, preview_every=request.preview_every,
            )
            return vae.decode(latents)

    def _context(self, prompts: list[str] | None, guidance: float | None, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Text context and mask of a request's rows: [cond; uncond] when guided (encoded as one batch)."""
        ema = self.ema
        assert ema is not None
        if prompts is None:
            context, mask = ema.text([""])  # validated once, before any step
            return context.expand(n, -1, -1), mask.expand(n, -1)
        return ema.text(prompts if guidance is None else prompts + [""] * n)

    def begin(self, request: SampleRequest) -> DiffusionTrajectory:
        prompts, guidance, name, steps = self._plan(request)
        if request.preview_every < 0:
            raise InvalidArgument("preview_every", f"must be >= 0 (0: no previews), got {request.preview_every}")
        vae = self.vae()
        noise = NoiseSource(request.seeds, self.device)
        x_T = noise.randn(*self.config.latent_shape)
        state = self.context.samplers.get(name).start(self.process, x_T, steps=steps, noise=noise, eta=request.eta)
        assert state is not None, f"sampler {name!r} steps (can_step) but start() gave no state"
        cond = self._context(prompts, guidance, request.num_samples)
        return DiffusionTrajectory(request, state, cond, guidance, finish=vae.decode, preview=vae.decode)

    def network_pass(self, x: torch.Tensor, t: torch.Tensor, conds: list[Any], rows: list[int]) -> torch.Tensor:
        # conds: (context [R_i, L_i, D], mask [R_i, L_i]) per trajectory; shorter contexts padded, padding masked out
        ema = self.ema
        assert ema is not None
        if len(conds) == 1:
            context, mask = conds[0]
        else:
            length = max(c.shape[1] for c, _ in conds)
            context = torch.cat([F.pad(c, (0, 0, 0, length - c.shape[1])) for c, _ in conds])
            mask = torch.cat([F.pad(m, (0, length - m.shape[1]), value=False) for _, m in conds])
        return ema(x, t, context, mask)

    # ---- weights ----------------------------------------------------------------------------

    def _modules(self) -> dict[str, nn.Module]:
        if self.net is None or self.ema is None:
            raise FailedPrecondition("this ldm has no networks yet: it is built when trained, or from a trained version's config")
        return {"net": self.net, "ema": self.ema}

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        super().load_state_dict(tensors)
        if self.context.load_version is not None:
            self.vae()  # the autoencoder's weights belong to this model too: load them now, not mid-request

    def to(self, device: torch.device | str) -> LDMModel:
        self.device = torch.device(device)
        for module in (self.net, self.ema):
            if module is not None:
                module.to(self.device)
        if self._vae is not None:
            self._vae.to(self.device)
        return self

    def describe(self) -> dict[str, Any]:
        """The capabilities, with the autoencoder and the text encoder."""
        cfg = self.config
        return {**super().describe(), "family": LDMFamily.name, "latent_shape": list(cfg.latent_shape),
                "autoencoder": cfg.autoencoder, "text_encoder": cfg.text_encoder,
                "parameters": sum(p.numel() for p in self.net.parameters()) if self.net is not None else 0,
                "vocabulary": (cfg.text_settings or {}).get("vocabulary"), "train_steps": self.train_steps}


class LDMFamily(ModelFamily, name="ldm", config_class=LDMConfig, model_class=LDMModel):
    """Latent diffusion over a registered vae, with cross-attention text/class conditioning and guidance

    Latent diffusion: denoise a registered autoencoder's latents, conditioned on text through cross-attention.
    """
    parent_config_key: ClassVar[str] = "autoencoder"  # `--parent vae-x:N` pins the autoencoder and records lineage

    def config_for(self, dataset: Dataset) -> LDMConfig:
        if dataset.kind != "image":
            raise InvalidArgument("dataset", f"the ldm needs an image dataset; {dataset.name!r} holds 2D points")
        return LDMConfig(autoencoder=f"vae-{dataset.name}", class_names=tuple(dataset.class_names or ()))
