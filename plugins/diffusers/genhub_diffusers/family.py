"""The "diffusers" family: imported DDPM/DDIM pipelines, sampled with genhub's own samplers.

The network is diffusers' own ``UNet2DModel``, built from the imported config
(so diffusers is a run-time dependency, imported only when a model is built):
re-implementing its blocks would risk the exact parity the import promises.
The noise schedule and the reverse loop are genhub's (``pipeline.make_process``
and any registered sampler), so an imported model samples like every other
diffusion model here: per-seed noise, step events, any batching.
"""

from __future__ import annotations

import math
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
    SampleCost,
    SampleRequest,
    StepCallback,
)

from hub.sampling import Sampler
from hub.stepping import DiffusionTrajectory, SteppedModel

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


class DiffusersModel(SteppedModel, GenerativeModel):
    """An imported UNet2DModel pipeline in memory; the engine batches its network passes with other requests'."""

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
            output_kind="image", sample_shape=self.sample_shape, samplers=tuple(self.context.samplers.names()),
            default_sampler=cfg.default_sampler, max_steps=self.process.num_timesteps, default_steps=cfg.default_steps,
            eta=True, num_classes=self.num_classes, condition_required=self.num_classes > 0,
        )

    def _steps(self, request: SampleRequest) -> tuple[str, int]:
        """(sampler name, steps) of ``request``: its own, else the pipeline's default, else that sampler's (capped at T)."""
        name = request.sampler or self.config.default_sampler
        if request.steps is not None:
            return name, request.steps
        default = self.config.default_steps if name == self.config.default_sampler else self.context.samplers.get(name).default_steps
        return name, min(default, self.process.num_timesteps)

    def sample_cost(self, request: SampleRequest) -> SampleCost:
        return SampleCost(passes=self._steps(request)[1], rows=request.num_samples, values=math.prod(self.sample_shape))

    def can_step(self, request: SampleRequest) -> bool:
        name = request.sampler or self.config.default_sampler
        return name not in self.context.samplers or self.context.samplers.get(name).can_step()

    def _start(self, request: SampleRequest) -> tuple[Sampler, int, NoiseSource, torch.Tensor, torch.Tensor | None]:
        """Check ``request``; its sampler, steps, noise, x_T ([N, C, H, W]) and class labels ([N] or None)."""
        self.capabilities.check(request)
        labels = None if request.class_labels is None else torch.tensor(request.class_labels, dtype=torch.long, device=self.device)
        name, steps = self._steps(request)
        sampler = self.context.samplers.get(name)
        sampler.check_steps(steps, self.process)
        noise = NoiseSource(request.seeds, self.device)
        return sampler, steps, noise, noise.randn(*self.sample_shape), labels  # x_T as the pipeline's per-row generators draw it

    def sample(self, request: SampleRequest, callback: StepCallback | None = None) -> torch.Tensor:
        """[N, C, H, W] in [-1, 1]; from the same initial noise, what the diffusers pipeline returns (scaled to [0, 1])."""
        if self.can_step(request):
            return self.sample_alone(request, callback)
        sampler, steps, noise, x_T, labels = self._start(request)  # a sampler with only a whole loop

        def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.network_pass(x, t, [labels], [x.shape[0]])

        out = sampler.sample(
            model_fn, self.process, x_T, steps=steps, noise=noise, eta=request.eta, callback=callback, preview_every=request.preview_every
        )
        return out.clamp(-1.0, 1.0)

    def begin(self, request: SampleRequest) -> DiffusionTrajectory:
        sampler, steps, noise, x_T, labels = self._start(request)
        state = sampler.start(self.process, x_T, steps=steps, noise=noise, eta=request.eta)
        assert state is not None, f"sampler {sampler.name!r} steps (can_step) but start() gave no state"
        return DiffusionTrajectory(request, state, labels, None, lambda x: x.clamp(-1.0, 1.0))

    def network_pass(self, x: torch.Tensor, t: torch.Tensor, conds: list[Any], rows: list[int]) -> torch.Tensor:
        # x: [R, C, H, W], t: [R]; a class-conditional UNet has labels in every request (capabilities require them)
        labels = torch.cat(conds) if self.num_classes else None
        return self.unet(x, t, class_labels=labels).sample

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
        """The capabilities, with where the pipeline came from and its network."""
        cfg = self.config
        return {**super().describe(), "family": DiffusersFamily.name, "pipeline": cfg.model_index["_class_name"],
                "source": cfg.source, "parameters": sum(p.numel() for p in self.unet.parameters()),
                "num_timesteps": self.process.num_timesteps, "prediction_type": self.process.prediction_type}


class DiffusersFamily(ModelFamily):
    """diffusers DDPMPipeline / DDIMPipeline folders, imported with ``genhub import diffusers PATH --name NAME``."""

    name: ClassVar[str] = "diffusers"
    config_class: ClassVar[type[ModelConfig]] = DiffusersConfig
    model_class: ClassVar[type[GenerativeModel]] = DiffusersModel
    description: ClassVar[str] = "diffusers UNet2DModel pipelines (DDPM/DDIM) imported from local folders; inference only"

    def default_config(self, dataset: Dataset | None = None) -> DiffusersConfig:
        raise FailedPrecondition(
            "the 'diffusers' family is not trained in genhub; import a pipeline folder: genhub import diffusers PATH --name NAME"
        )
