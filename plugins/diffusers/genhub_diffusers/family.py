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
from torch import nn

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
    StepEvent,
)

from hub.sampling import Sampler
from hub.stepping import DiffusionTrajectory, SteppedModel

from genhub_diffusers.pipeline import TEXT_TO_IMAGE, PipelineFolder, check_model_index, check_unet, check_vae, make_process

if TYPE_CHECKING:
    from hub.datasets import Dataset

SD_SCHEDULER_FIXES = {"steps_offset": 1, "clip_sample": False}  # StableDiffusionPipeline sets these on any scheduler


@dataclass
class DiffusersConfig(ModelConfig):
    """An imported pipeline: its three configs as diffusers wrote them, and where it came from."""

    model_index: dict[str, Any] = field(default_factory=dict)  # model_index.json
    unet: dict[str, Any] = field(default_factory=dict)  # unet/config.json
    scheduler: dict[str, Any] = field(default_factory=dict)  # scheduler/scheduler_config.json
    source: str = ""  # the folder it was imported from (details in the version's card)
    default_sampler: str = "ddim"  # "ddim" for a DDIMPipeline, the scheduler's own for a DDPMPipeline
    default_steps: int = 50  # the pipeline's own default (DDIM 50, DDPM 1000), at most num_train_timesteps
    # StableDiffusionPipeline only (empty otherwise): its other components' configs, and its default guidance
    vae: dict[str, Any] = field(default_factory=dict)  # vae/config.json
    text_encoder: dict[str, Any] = field(default_factory=dict)  # text_encoder/config.json (transformers)
    tokenizer: dict[str, Any] = field(default_factory=dict)  # tokenizer/tokenizer_config.json (its files: in the weights)
    default_guidance: float = 7.5  # StableDiffusionPipeline's guidance_scale default

    def __post_init__(self) -> None:
        layout = check_model_index(self.model_index)
        latent_channels = check_unet(self.unet)[0]
        missing = [k for k in ("vae", "text_encoder", "tokenizer") if k in layout and not getattr(self, k)]
        if missing:
            raise InvalidArgument(missing[0], f"a {self.model_index['_class_name']} needs its {missing[0]} config")
        if self.vae:
            check_vae(self.vae, latent_channels)
        process = make_process(self.scheduler)
        if not 1 <= self.default_steps <= process.num_timesteps:
            raise InvalidArgument("default_steps", f"must be between 1 and {process.num_timesteps}, got {self.default_steps}")

    @property
    def text_to_image(self) -> bool:
        return self.model_index.get("_class_name") == TEXT_TO_IMAGE

    @classmethod
    def for_pipeline(cls, folder: PipelineFolder) -> DiffusersConfig:
        """The config of a freshly read folder, with the sampler and steps its pipeline class uses by default."""
        scheduler = folder.scheduler
        ddim = folder.pipeline_class == "DDIMPipeline" or scheduler.get("_class_name") == "DDIMScheduler"
        steps = 50 if ddim or folder.pipeline_class == TEXT_TO_IMAGE else 1000  # each pipeline's num_inference_steps
        T = int(scheduler.get("num_train_timesteps", 1000))
        others = {k: folder.configs[k] for k in ("vae", "text_encoder", "tokenizer") if k in folder.configs}
        if folder.pipeline_class == TEXT_TO_IMAGE:  # what StableDiffusionPipeline.__init__ makes of an outdated config
            scheduler = {**scheduler, **SD_SCHEDULER_FIXES}
        return cls(folder.model_index, folder.unet, scheduler, str(folder.path), "ddim" if ddim else "ddpm", min(steps, T), **others)


class DiffusersModel(SteppedModel, GenerativeModel):
    """An imported UNet2DModel pipeline in memory; the engine batches its network passes with other requests'."""

    def __init__(self, config: DiffusersConfig, context: BuildContext) -> None:
        self.config = config
        self.context = context
        self.sample_shape = check_unet(config.unet)  # [C, H, W]
        self.process = make_process(config.scheduler)
        self.num_classes = int(config.unet.get("num_class_embeds") or 0)
        self.device = torch.device("cpu")
        with torch.random.fork_rng(devices=[]):  # the random init is overwritten on load; keep the caller's RNG
            self.modules: dict[str, nn.Module] = {k: m.eval().requires_grad_(False) for k, m in self.build_modules().items()}
        self.unet = self.modules["unet"]

    def build_modules(self) -> dict[str, nn.Module]:
        """The networks, by component name (their weights are stored under "<name>."), with random weights."""
        from diffusers import UNet2DModel  # the run-time dependency: exact parity with the network as trained

        return {"unet": UNet2DModel.from_config(self.config.unet)}

    @property
    def capabilities(self) -> Capabilities:
        """Any registered sampler, eta, and the pipeline's conditioning (``conditioning``)."""
        cfg = self.config
        return Capabilities(
            output_kind="image", sample_shape=self.sample_shape, samplers=tuple(self.context.samplers.names()),
            default_sampler=cfg.default_sampler, max_steps=self.process.num_timesteps, default_steps=cfg.default_steps,
            eta=True, **self.conditioning(),
        )

    def conditioning(self) -> dict[str, Any]:
        """The conditioning fields of ``capabilities``: class labels when the UNet has class embeddings (then required)."""
        return {"num_classes": self.num_classes, "condition_required": self.num_classes > 0}

    def _steps(self, request: SampleRequest) -> tuple[str, int]:
        """(sampler name, steps) of ``request``: its own, else the pipeline's default, else that sampler's (capped at T)."""
        name = request.sampler or self.config.default_sampler
        if request.steps is not None:
            return name, request.steps
        default = self.config.default_steps if name == self.config.default_sampler else self.context.samplers.get(name).default_steps
        return name, min(default, self.process.num_timesteps)

    def sample_cost(self, request: SampleRequest) -> SampleCost:
        rows = request.num_samples * (2 if self._guidance(request) is not None else 1)
        return SampleCost(passes=self._steps(request)[1], rows=rows, values=math.prod(self.noise_shape))

    @property
    def noise_shape(self) -> tuple[int, ...]:
        """[C, H, W] of what the sampler denoises: the images here, latents for a latent pipeline."""
        return self.sample_shape

    def can_step(self, request: SampleRequest) -> bool:
        name = request.sampler or self.config.default_sampler
        return name not in self.context.samplers or self.context.samplers.get(name).can_step()

    def _guidance(self, request: SampleRequest) -> float | None:
        """Classifier-free guidance scale of a request; None: plain conditional passes (no guidance here)."""
        return None

    def condition(self, request: SampleRequest) -> Any:
        """What ``network_pass`` takes for this request's rows (guided: [cond; uncond]): class labels [N] or None."""
        return None if request.class_labels is None else torch.tensor(request.class_labels, dtype=torch.long, device=self.device)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """The samples ([N, C, H, W] in [-1, 1]) from the sampler's result."""
        return x.clamp(-1.0, 1.0)

    def _start(self, request: SampleRequest) -> tuple[Sampler, int, NoiseSource, torch.Tensor, Any, float | None]:
        """Check ``request``; its sampler, steps, noise, x_T ([N, *noise_shape]), conditioning and guidance."""
        self.capabilities.check(request)
        name, steps = self._steps(request)
        sampler = self.context.samplers.get(name)
        sampler.check_steps(steps, self.process)
        noise = NoiseSource(request.seeds, self.device)
        x_T = noise.randn(*self.noise_shape)  # as the pipeline's per-row generators draw it
        return sampler, steps, noise, x_T, self.condition(request), self._guidance(request)

    def sample(self, request: SampleRequest, callback: StepCallback | None = None) -> torch.Tensor:
        """[N, C, H, W] in [-1, 1]; from the same initial noise, what the diffusers pipeline returns (scaled to [0, 1])."""
        if self.can_step(request):
            return self.sample_alone(request, callback)
        sampler, steps, noise, x_T, cond, guidance = self._start(request)  # a sampler with only a whole loop

        def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if guidance is None:
                return self.network_pass(x, t, [cond], [x.shape[0]])
            c, u = self.network_pass(torch.cat([x, x]), torch.cat([t, t]), [cond], [2 * x.shape[0]]).chunk(2)
            return u + guidance * (c - u)

        def finish_previews(event: StepEvent) -> bool | None:
            preview = None if event.preview is None else self.finish(event.preview)
            return None if callback is None else callback(StepEvent(event.step, event.total, preview))

        with torch.no_grad():
            out = sampler.sample(model_fn, self.process, x_T, steps=steps, noise=noise, eta=request.eta,
                                 callback=finish_previews, preview_every=request.preview_every)
            return self.finish(out)

    def begin(self, request: SampleRequest) -> DiffusionTrajectory:
        sampler, steps, noise, x_T, cond, guidance = self._start(request)
        state = sampler.start(self.process, x_T, steps=steps, noise=noise, eta=request.eta)
        assert state is not None, f"sampler {sampler.name!r} steps (can_step) but start() gave no state"
        return DiffusionTrajectory(request, state, cond, guidance, self.finish, self.finish)

    def network_pass(self, x: torch.Tensor, t: torch.Tensor, conds: list[Any], rows: list[int]) -> torch.Tensor:
        # x: [R, C, H, W], t: [R]; a class-conditional UNet has labels in every request (capabilities require them)
        labels = torch.cat(conds) if self.num_classes else None
        return self.unet(x, t, class_labels=labels).sample

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{k}": v.detach().to("cpu", copy=True).contiguous()
                for name, module in self.modules.items() for k, v in module.state_dict().items()}

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        for name, module in self.modules.items():
            prefix = f"{name}."
            weights = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            expected = set(module.state_dict())
            missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
            fits = f"the {name} weights do not fit {name}/config.json"
            if missing or unexpected:
                raise InvalidArgument(
                    "weights", f"{fits}: missing {missing[:4]}, unexpected {unexpected[:4]} ({len(missing)} missing, "
                    f"{len(unexpected)} unexpected); import a folder whose weights and config belong together",
                )
            try:
                module.load_state_dict(weights)
            except RuntimeError as err:  # shape mismatches
                raise InvalidArgument("weights", f"{fits}: {err}") from None

    def to(self, device: torch.device | str) -> DiffusersModel:
        self.device = torch.device(device)
        for module in self.modules.values():
            module.to(self.device)
        return self

    def describe(self) -> dict[str, Any]:
        """The capabilities, with where the pipeline came from and its network."""
        cfg = self.config
        return {**super().describe(), "family": DiffusersFamily.name, "pipeline": cfg.model_index["_class_name"],
                "source": cfg.source, "parameters": {k: sum(p.numel() for p in m.parameters()) for k, m in self.modules.items()},
                "num_timesteps": self.process.num_timesteps, "prediction_type": self.process.prediction_type}


class DiffusersFamily(ModelFamily):
    """diffusers DDPMPipeline / DDIMPipeline / StableDiffusionPipeline folders, imported with ``genhub import diffusers PATH --name NAME``."""

    name: ClassVar[str] = "diffusers"
    config_class: ClassVar[type[ModelConfig]] = DiffusersConfig
    model_class: ClassVar[type[GenerativeModel]] = DiffusersModel
    description: ClassVar[str] = ("diffusers pipelines imported from local folders (DDPM/DDIM UNet2DModel; "
                                  "StableDiffusionPipeline text-to-image with genhub-diffusers[text]); inference only")

    def build(self, config: ModelConfig, context: BuildContext) -> GenerativeModel:
        """A ``TextToImageModel`` for a StableDiffusionPipeline, else a ``DiffusersModel``."""
        if isinstance(config, DiffusersConfig) and config.text_to_image:
            from genhub_diffusers.latent import TextToImageModel  # needs transformers: genhub-diffusers[text]

            return TextToImageModel(config, context)
        return super().build(config, context)

    def default_config(self, dataset: Dataset | None = None) -> DiffusersConfig:
        raise FailedPrecondition(
            "the 'diffusers' family is not trained in genhub; import a pipeline folder: genhub import diffusers PATH --name NAME"
        )
