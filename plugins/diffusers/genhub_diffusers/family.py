"""The "diffusers" family: imported DDPM/DDIM pipelines, sampled with genhub's own samplers.

The network is diffusers' own ``UNet2DModel``, built from the imported config
(so diffusers is a run-time dependency, imported only when a model is built):
re-implementing its blocks would risk the exact parity the import promises.
The noise schedule and the reverse loop are genhub's (``pipeline.make_process``
and any registered sampler), so an imported model samples like every other
diffusion model here: per-seed noise, step events, any batching.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import torch

from hub.errors import FailedPrecondition, InvalidArgument
from hub.model import (
    BuildContext,
    Capabilities,
    GenerativeModel,
    ModelConfig,
    ModelFamily,
    NoiseSource,
    SampleRequest,
    StepCallback,
)

from genhub_diffusers.pipeline import check_model_index, check_unet, make_process

if TYPE_CHECKING:
    from hub.datasets import Dataset

PREFIX = "unet."  # weights are stored as the UNet's state dict under this prefix


@dataclass
class DiffusersConfig(ModelConfig):
    """An imported pipeline: its three configs as diffusers wrote them, and where it came from."""

    model_index: dict[str, Any] = field(default_factory=dict)  # model_index.json
    unet: dict[str, Any] = field(default_factory=dict)  # unet/config.json
    scheduler: dict[str, Any] = field(default_factory=dict)  # scheduler/scheduler_config.json
    source: str = ""  # the folder it was imported from (details in the version's card)
    default_sampler: str = "ddim"  # "ddim" for a DDIMPipeline, the scheduler's own for a DDPMPipeline
    default_steps: int = 50  # the pipeline's own default (DDIM 50, DDPM 1000), at most num_train_timesteps

    def __post_init__(self) -> None:
        check_model_index(self.model_index)
        check_unet(self.unet)
        process = make_process(self.scheduler)
        if not 1 <= self.default_steps <= process.num_timesteps:
            raise InvalidArgument("default_steps", f"must be between 1 and {process.num_timesteps}, got {self.default_steps}")

    @classmethod
    def for_pipeline(cls, model_index: dict[str, Any], unet: dict[str, Any], scheduler: dict[str, Any], source: str) -> DiffusersConfig:
        """The config of a freshly read folder, with the sampler and steps its pipeline class uses by default."""
        ddim = model_index["_class_name"] == "DDIMPipeline" or scheduler.get("_class_name") == "DDIMScheduler"
        steps = 50 if ddim else 1000
        T = int(scheduler.get("num_train_timesteps", 1000))
        return cls(model_index, unet, scheduler, source, "ddim" if ddim else "ddpm", min(steps, T))


class DiffusersModel(GenerativeModel):
    """An imported UNet2DModel pipeline in memory."""

    output_kind: ClassVar[str] = "image"

    def __init__(self, config: DiffusersConfig, context: BuildContext) -> None:
        from diffusers import UNet2DModel  # the run-time dependency: exact parity with the network as trained

        self.config = config
        self.context = context
        self.sample_shape = check_unet(config.unet)  # [C, H, W]
        self.process = make_process(config.scheduler)
        with torch.random.fork_rng(devices=[]):  # the random init is overwritten on load; keep the caller's RNG
            self.unet = UNet2DModel.from_config(config.unet).eval().requires_grad_(False)
        self.num_classes = int(config.unet.get("num_class_embeds") or 0)
        if self.num_classes and config.unet.get("class_embed_type") is not None:
            raise InvalidArgument(
                "unet", f"class_embed_type={config.unet['class_embed_type']!r} is not supported; only num_class_embeds (labels)"
            )
        self.device = torch.device("cpu")

    @property
    def capabilities(self) -> Capabilities:
        """Any registered sampler; class labels when the UNet has class embeddings (then required)."""
        cfg = self.config
        return Capabilities(
            output_kind=self.output_kind, sample_shape=self.sample_shape, samplers=tuple(self.context.samplers.names()),
            default_sampler=cfg.default_sampler, max_steps=self.process.num_timesteps, default_steps=cfg.default_steps,
            eta=True, num_classes=self.num_classes, condition_required=self.num_classes > 0,
        )

    def sample(self, request: SampleRequest, callback: StepCallback | None = None) -> torch.Tensor:
        """[N, C, H, W] in [-1, 1]; from the same initial noise, what the diffusers pipeline returns (scaled to [0, 1])."""
        self.capabilities.check(request)
        labels = None if request.class_labels is None else torch.tensor(request.class_labels, dtype=torch.long, device=self.device)
        name = request.sampler or self.config.default_sampler
        sampler = self.context.samplers.get(name)
        default = self.config.default_steps if name == self.config.default_sampler else sampler.default_steps
        steps = request.steps if request.steps is not None else min(default, self.process.num_timesteps)
        sampler.check_steps(steps, self.process)
        noise = NoiseSource(request.seeds, self.device)
        x_T = noise.randn(*self.sample_shape)  # [N, C, H, W], as the pipeline's randn_tensor with one generator per row

        def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.unet(x, t, class_labels=labels).sample

        out = sampler.sample(
            model_fn, self.process, x_T, steps=steps, noise=noise, eta=request.eta, callback=callback, preview_every=request.preview_every
        )
        return out.clamp(-1.0, 1.0)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {PREFIX + k: v.detach().to("cpu", copy=True).contiguous() for k, v in self.unet.state_dict().items()}

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        weights = {k[len(PREFIX):]: v for k, v in tensors.items() if k.startswith(PREFIX)}
        expected = set(self.unet.state_dict())
        missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
        if missing or unexpected:
            raise InvalidArgument(
                "weights",
                f"the UNet weights do not fit unet/config.json: missing {missing[:4]}, unexpected {unexpected[:4]} "
                f"({len(missing)} missing, {len(unexpected)} unexpected); import a folder whose weights and config belong together",
            )
        try:
            self.unet.load_state_dict(weights)
        except RuntimeError as err:  # shape mismatches
            raise InvalidArgument("weights", f"the UNet weights do not fit unet/config.json: {err}") from None

    def to(self, device: torch.device | str) -> DiffusersModel:
        self.device = torch.device(device)
        self.unet.to(self.device)
        return self

    def describe(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "family": DiffusersFamily.name,
            "output_kind": self.output_kind,
            "sample_shape": list(self.sample_shape),
            "pipeline": cfg.model_index["_class_name"],
            "source": cfg.source,
            "parameters": sum(p.numel() for p in self.unet.parameters()),
            "num_timesteps": self.process.num_timesteps,
            "prediction_type": self.process.prediction_type,
            "samplers": self.context.samplers.names(),
            "default_sampler": cfg.default_sampler,
            "default_steps": cfg.default_steps,
            "num_classes": self.num_classes,
            "class_conditional": self.num_classes > 0,
            "supports_guidance": False,
        }


class DiffusersFamily(ModelFamily):
    """diffusers DDPMPipeline / DDIMPipeline folders, imported with ``genhub import diffusers PATH --name NAME``."""

    name: ClassVar[str] = "diffusers"
    config_class: ClassVar[type[ModelConfig]] = DiffusersConfig
    description: ClassVar[str] = "diffusers UNet2DModel pipelines (DDPM/DDIM) imported from local folders; inference only"

    def build(self, config: ModelConfig, context: BuildContext) -> DiffusersModel:
        if not isinstance(config, DiffusersConfig):
            raise InvalidArgument("config", f"family 'diffusers' needs a DiffusersConfig, got {type(config).__name__}")
        return DiffusersModel(config, context)

    def default_config(self, dataset: Dataset | None = None) -> DiffusersConfig:
        raise FailedPrecondition(
            "the 'diffusers' family is not trained in genhub; import a pipeline folder: genhub import diffusers PATH --name NAME"
        )
