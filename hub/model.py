"""The model interface every family implements.

A *family* (``ModelFamily``) is code: it builds a ``GenerativeModel`` from a typed
config. A *model* in the registry is a name bound to one family, with numbered
versions, each a config JSON plus a safetensors artifact of its weights.

Images cross this interface as float tensors in [-1, 1], layout [N, C, H, W];
2D point data as [N, 2].
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Hashable, Mapping, Sequence, TypeVar

import numpy as np
import torch

from hub.capabilities import Capabilities, Param
from hub.errors import Cancelled, FailedPrecondition, InvalidArgument

if TYPE_CHECKING:
    from hub.datasets import Dataset
    from hub.sampling import SamplerRegistry
    from hub.text import TextEncoderRegistry

C = TypeVar("C", bound="ModelConfig")
ParamValue = float | int | str | bool

__all__ = ["Capabilities", "InferenceModel", "Param", "PretrainedModel", "simple_family"]  # and the rest below


@dataclass
class ModelConfig:
    """Base of every family's config: a dataclass that round-trips through JSON."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InvalidArgument(
                "config", f"unknown key(s) {unknown} for {cls.__name__}; known keys: {sorted(known)}"
            )
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        return cls.from_dict(json.loads(text))

    def replace(self: C, **overrides: Any) -> C:
        return type(self).from_dict({**self.to_dict(), **overrides})

    @property
    def is_points(self) -> bool:
        """Whether samples are [D] points (a ``sample_shape`` of one dimension) rather than [C, H, W] images."""
        return len(getattr(self, "sample_shape", ())) == 1

    def check_at_least_one(self, *names: str) -> None:
        """Option checks for ``__post_init__``: each named field must be >= 1."""
        for name in names:
            if getattr(self, name) < 1:
                raise InvalidArgument(name, f"must be >= 1, got {getattr(self, name)}")

    def check_fractions(self, *names: str) -> None:
        """Option checks for ``__post_init__``: each named field (a decay, a dropout, an Adam beta) in [0, 1)."""
        for name in names:
            if not 0.0 <= getattr(self, name) < 1.0:
                raise InvalidArgument(name, f"must be in [0, 1), got {getattr(self, name)}")


def per_sample_seeds(seed: int, count: int) -> list[int]:
    """The seed of each image of a request: image i depends only on (seed, i).

    This is what lets a server batch requests together without changing any
    request's images.
    """
    if seed < 0:
        raise InvalidArgument("seed", f"must be >= 0, got {seed}")
    states = [np.random.SeedSequence([seed, i]).generate_state(1, dtype=np.uint64)[0] for i in range(count)]
    return [int(s & 0x7FFF_FFFF_FFFF_FFFF) for s in states]


class NoiseSource:
    """Gaussian noise drawn per sample from that sample's own generator.

    Row i of every tensor it returns depends only on seed i, so the same seed
    gives the same image whatever batch it is sampled in.
    """

    def __init__(self, seeds: list[int], device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, *shape: int) -> torch.Tensor:
        """A [N, *shape] standard normal tensor, one generator per row."""
        rows = [torch.randn(shape, generator=g) for g in self.generators]
        return torch.stack(rows).to(self.device)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return self.randn(*x.shape[1:]).to(dtype=x.dtype)


PER_SAMPLE = {"per_sample": True}  # one entry per sample: concatenated when requests share a sampling call
UNLOGGED = {"logged": False}  # how results are presented, not what they are: left out of the generation log


@dataclass
class SampleRequest:
    """What to sample. One entry of ``seeds`` per output sample.

    A new field is declared here (with its metadata) and validated in ``Capabilities.check`` and the wire parsers;
    the batching key, the merged request of a shared sampling call and the logged parameters follow from the fields.
    """

    seeds: list[int] = field(metadata=PER_SAMPLE)
    sampler: str | None = None  # None: the family's default
    steps: int | None = None  # None: the family's default
    eta: float = 0.0  # DDIM stochasticity
    guidance_scale: float | None = None  # classifier-free guidance, conditional families
    truncation: float | None = None  # GAN truncation psi
    class_labels: list[int] | None = field(default=None, metadata=PER_SAMPLE)  # one per sample
    prompts: list[str] | None = field(default=None, metadata=PER_SAMPLE)  # one per sample
    negative_prompts: list[str] | None = field(default=None, metadata=PER_SAMPLE)  # guided away from; one per sample
    params: dict[str, ParamValue] = field(default_factory=dict)  # family-specific
    preview_every: int = field(default=0, metadata=UNLOGGED)  # 0: no previews in step events

    @property
    def num_samples(self) -> int:
        return len(self.seeds)

    @classmethod
    def from_seed(cls, seed: int, num_samples: int, **kwargs: Any) -> SampleRequest:
        return cls(seeds=per_sample_seeds(seed, num_samples), **kwargs)

    def batch_key(self) -> Hashable:
        """Requests with equal keys sample the same way, so they may share one sampling call: every field equal
        (parameters by type too: 1, 1.0 and True differ), per-sample fields given alike."""
        return tuple((f.name, getattr(self, f.name) is not None) if f.metadata.get("per_sample")
                     else (f.name, _hashable(getattr(self, f.name))) for f in dataclasses.fields(self))

    @classmethod
    def concat(cls, requests: Sequence[SampleRequest]) -> SampleRequest:
        """One request for a shared sampling call: per-sample fields concatenated in order, the rest the first's."""
        first = requests[0]
        joined = {f.name: [x for r in requests for x in getattr(r, f.name)] for f in dataclasses.fields(cls)
                  if f.metadata.get("per_sample") and getattr(first, f.name) is not None}
        return dataclasses.replace(first, **joined, params=dict(first.params))

    def logged(self) -> dict[str, Any]:
        """What a generation's log record keeps of the request (everything but presentation)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("logged", True)}


def _hashable(value: Any) -> Hashable:
    if isinstance(value, dict):
        return tuple((k, type(v).__name__, v) for k, v in sorted(value.items()))
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class StepEvent:
    """Progress of one sampling call: ``step`` of ``total`` done."""

    step: int
    total: int
    preview: torch.Tensor | None = None  # [N, C, H, W] in [-1, 1], current estimate of the result


StepCallback = Callable[[StepEvent], "bool | None"]


def report_step(callback: StepCallback | None, event: StepEvent) -> None:
    """Call a step callback; a callback that returns False stops the loop."""
    if callback is not None and callback(event) is False:
        raise Cancelled(f"sampling stopped by the caller at step {event.step} of {event.total}")


@dataclass(frozen=True)
class TrainProgress:
    step: int
    total: int
    loss: float


@dataclass
class TrainOptions:
    steps: int
    batch_size: int = 64
    learning_rate: float = 2e-4
    seed: int = 0
    device: str = "cpu"


@dataclass
class TrainResult:
    losses: list[float]  # one entry per logged interval (mean loss)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SampleCost:
    """What sampling a request costs: network passes x rows per pass x values per row.

    A row is one sample in one network pass; classifier-free guidance doubles a sample's rows.
    Servers bound requests (and queues) by ``total``, not by sample count.
    """

    passes: int
    rows: int  # rows per pass: samples, or 2 x samples when guided
    values: int  # values (pixels x channels, or point coordinates) per row

    @property
    def total(self) -> int:
        return self.passes * self.rows * self.values

    def describe(self) -> str:
        return f"{self.passes} passes x {self.rows} rows x {self.values} values = {self.total:,}"


class GenerativeModel(ABC):
    """A built model: weights in memory, ready to sample (and to train, for families that train).

    ``capabilities`` says what it accepts; the hub checks every request against it before queueing. Training is
    optional: a family that only samples weights trained elsewhere leaves ``train`` as it is here.
    """

    config: ModelConfig

    @property
    @abstractmethod
    def capabilities(self) -> Capabilities:
        """What this model accepts and returns (a class attribute will do for a model whose config never varies)."""

    @property
    def output_kind(self) -> str:
        """"image" ([N, C, H, W] in [-1, 1]) or "points" ([N, D])."""
        return self.capabilities.output_kind

    def train(
        self, dataset: Dataset, options: TrainOptions, progress: Callable[[TrainProgress], None] | None = None
    ) -> TrainResult:
        """Train in place on ``dataset``; call ``progress`` now and then. Optional: see ``can_train``."""
        raise FailedPrecondition(
            f"{type(self).__name__} only samples: its weights are trained elsewhere and registered as they are "
            "(a plugin's pretrained checkpoint, or `genhub import`)"
        )

    @abstractmethod
    def sample(self, request: SampleRequest, callback: StepCallback | None = None) -> torch.Tensor:
        """Return samples, [N, C, H, W] in [-1, 1] (or [N, 2] points); deterministic per seed."""

    @abstractmethod
    def state_dict(self) -> dict[str, torch.Tensor]:
        """All weights (and buffers) as a flat dict of tensors, saved as safetensors."""

    @abstractmethod
    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Load weights produced by ``state_dict``."""

    def to(self, device: torch.device | str) -> GenerativeModel:
        """Move to a device; families with modules override this."""
        return self

    def describe(self) -> dict[str, Any]:
        """Facts a person may want beyond the capabilities (parameter counts, schedule, training steps)."""
        return self.capabilities.to_dict()

    def sample_cost(self, request: SampleRequest) -> SampleCost:
        """The compute ``request`` takes; cheap, no sampling. Families whose rows or passes differ (guidance) override it.

        The default: ``capabilities``' steps (the request's, else the default) passes over its ``sample_shape``.
        """
        caps = self.capabilities
        passes = request.steps if request.steps is not None else caps.default_steps
        return SampleCost(passes=passes, rows=request.num_samples, values=int(np.prod(caps.sample_shape or (1,))))


def can_train(model: GenerativeModel | type[GenerativeModel]) -> bool:
    """Whether a model (or model class) implements ``train``; inference-only ones do not."""
    cls = model if isinstance(model, type) else type(model)
    return cls.train is not GenerativeModel.train


class InferenceModel(GenerativeModel):
    """A model that only samples, from fixed weights kept in ``self.weights`` (a flat dict of tensors).

    Subclasses set ``capabilities`` and write ``sample``; weights load, save and move devices here.
    """

    def __init__(self, config: ModelConfig, context: BuildContext | None = None) -> None:
        self.config = config
        self.context = context
        self.weights: dict[str, torch.Tensor] = {}
        self.device = torch.device("cpu")

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in self.weights.items()}

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.weights = {k: v.to(self.device) for k, v in tensors.items()}

    def to(self, device: torch.device | str) -> InferenceModel:
        self.device = torch.device(device)
        self.weights = {k: v.to(self.device) for k, v in self.weights.items()}
        return self


class ModelFamily(ABC):
    """Code for one kind of model. Registered by a plugin through ``register_models``."""

    name: ClassVar[str]
    config_class: ClassVar[type[ModelConfig]]
    model_class: ClassVar[type[GenerativeModel] | None] = None  # what ``build`` makes, unless a family overrides it
    description: ClassVar[str] = ""  # default: the first line of the class docstring

    def __init_subclass__(cls, *, name: str | None = None, config_class: type[ModelConfig] | None = None,
                          model_class: type[GenerativeModel] | None = None, **kwargs: Any) -> None:
        """``class MyFamily(ModelFamily, name="my", config_class=MyConfig, model_class=MyModel)`` sets the three at once."""
        super().__init_subclass__(**kwargs)
        for key, value in (("name", name), ("config_class", config_class), ("model_class", model_class)):
            if value is not None:
                setattr(cls, key, value)
        if "description" not in cls.__dict__ and cls.__doc__:
            cls.description = cls.__doc__.strip().split("\n")[0]

    def build(self, config: ModelConfig, context: BuildContext) -> GenerativeModel:
        """A model with fresh (untrained) weights for ``config``: ``model_class(config, context)``."""
        if not isinstance(config, self.config_class):
            raise InvalidArgument("config", f"family {self.name!r} needs a {self.config_class.__name__}, got {type(config).__name__}")
        if self.model_class is None:
            raise NotImplementedError(f"family {self.name!r} sets neither model_class nor build")
        return self.model_class(config, context)  # type: ignore[call-arg]

    def default_config(self, dataset: Dataset | None = None) -> ModelConfig:
        """A sensible config, fitted to ``dataset``'s shape where one is given (``config_for``)."""
        return self.config_class() if dataset is None else self.config_for(dataset)

    def config_for(self, dataset: Dataset) -> ModelConfig:
        """A config fitted to ``dataset`` (its shape, its classes); families override it."""
        return self.config_class()


def simple_family(name: str, model_class: type[GenerativeModel], *, config_class: type[ModelConfig] = ModelConfig,
                  description: str | None = None) -> ModelFamily:
    """A family whose ``build(config, context)`` is ``model_class(config, context)``; for small plugins."""
    doc = description if description is not None else (model_class.__doc__ or "").strip().split("\n")[0]
    attrs = {"name": name, "config_class": config_class, "model_class": model_class, "description": doc}
    return type(f"{name.title().replace('-', '')}Family", (ModelFamily,), attrs)()


@dataclass
class BuildContext:
    """What the hub lends a family when building: other plugins' parts and the registry."""

    samplers: SamplerRegistry
    load_version: Callable[[str], GenerativeModel] | None = None  # resolve 'name:version' to a loaded model
    text_encoders: TextEncoderRegistry | None = None  # for text-conditional families


@dataclass
class PretrainedModel:
    """A checkpoint shipped inside a plugin; the hub syncs it into the registry on start."""

    name: str  # registry model name, e.g. "ddpm-digits"
    family: str
    weights: Path | Mapping[str, torch.Tensor]  # a safetensors file, or the tensors themselves
    config: dict[str, Any]
    dataset: str
    card: Path | None = None  # markdown model card
    training: dict[str, Any] = field(default_factory=dict)  # command, seed, steps, wall_time_s, losses
    # figures measured before shipping: full records (name, value, data, hardware, sampler, steps, ...) or
    # the older {name: value} form
    metrics: list[dict[str, Any]] | dict[str, float] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    parent: str | None = None  # "name:version" of the model this one was derived from

    @classmethod
    def from_weights(
        cls, name: str, family: str, weights: Mapping[str, torch.Tensor], *, config: dict[str, Any] | None = None,
        dataset: str = "external",
    ) -> PretrainedModel:
        """A checkpoint given as tensors (e.g. fixed weights made in code); ``dataset`` "external": trained elsewhere."""
        return cls(name=name, family=family, weights=dict(weights), config=dict(config or {}), dataset=dataset)

    @classmethod
    def in_folder(cls, root: Path) -> list[PretrainedModel]:
        """Every checkpoint folder under ``root`` (a subfolder holding a card.json), in name order; none if it is missing."""
        if not root.is_dir():
            return []
        return [cls.from_dir(d) for d in sorted(root.iterdir()) if (d / "card.json").is_file()]

    @classmethod
    def from_dir(cls, directory: Path) -> PretrainedModel:
        """Load ``card.json`` (and ``model.safetensors``, ``card.md``) from a checkpoint folder."""
        meta = json.loads((directory / "card.json").read_text())
        card = directory / "card.md"
        return cls(
            name=meta["name"],
            family=meta["family"],
            weights=directory / "model.safetensors",
            config=meta["config"],
            dataset=meta["dataset"],
            card=card if card.exists() else None,
            training=meta.get("training", {}),
            metrics=meta.get("metrics", {}),
            tags=meta.get("tags", []),
            parent=meta.get("parent"),
        )
