"""What a model accepts, as a typed object the core checks a request against before it is queued.

A model declares ``capabilities`` (``GenerativeModel.capabilities``): its output kind and shape, the samplers
and step counts it runs, the conditioning it takes (class labels and their range, prompts), guidance,
truncation, and its family parameters with their types and ranges. ``Capabilities.check`` rejects a request
field the model does not support with one error format, ``InvalidArgument(field, what is wrong; the fix)``, so
the server answers INVALID_ARGUMENT before the request reaches a batch, and families keep no copies of these
checks. An unknown sampler name is ``NotFound``, as the sampler registry answers it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from hub.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from hub.model import ParamValue, SampleRequest

OUTPUT_KINDS = ("image", "points")
PARAM_TYPES = (int, float, str, bool)


@dataclass(frozen=True)
class Param:
    """One family parameter (an entry of ``SampleRequest.params``): its type, range or choices, and what it does."""

    type: type  # int, float, str or bool
    help: str = ""
    default: ParamValue | None = None  # what the model uses when the request leaves it out
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()  # str parameters: the accepted values

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise TypeError(f"Param.type must be one of int, float, str, bool; got {self.type!r}")

    def value(self, name: str, value: ParamValue) -> ParamValue:
        """``value`` checked and converted to ``type`` (an integral float is an int; an int is a float)."""
        where = f"params[{name}]"
        if self.type is bool:
            if not isinstance(value, bool):
                raise InvalidArgument(where, f"must be true or false, got {value!r}")
        elif self.type is int:
            if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
                raise InvalidArgument(where, f"must be an integer, got {value!r}")
            value = int(value)
        elif self.type is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidArgument(where, f"must be a finite number, got {value!r}")
            value = float(value)
        elif not isinstance(value, str):
            raise InvalidArgument(where, f"must be a string, got {value!r}")
        if self.choices and value not in self.choices:
            raise InvalidArgument(where, f"{value!r} is not one of {list(self.choices)}")
        if not isinstance(value, (str, bool)):
            low = -math.inf if self.min is None else self.min
            high = math.inf if self.max is None else self.max
            if not low <= value <= high:
                raise InvalidArgument(where, f"must be between {low:g} and {high:g}, got {value}")
        return value

    def describe(self) -> str:
        """One line: type, range or choices, default, help."""
        parts = [self.type.__name__]
        if self.choices:
            parts.append(f"one of {list(self.choices)}")
        elif self.min is not None or self.max is not None:
            parts.append(f"in [{'-inf' if self.min is None else f'{self.min:g}'}, {'inf' if self.max is None else f'{self.max:g}'}]")
        if self.default is not None:
            parts.append(f"default {self.default!r}")
        return ", ".join(parts) + (f": {self.help}" if self.help else "")


@dataclass(frozen=True)
class Capabilities:
    """What one model accepts and returns. Built by the model (it may depend on its config)."""

    output_kind: str = ""  # "image": [N, C, H, W] in [-1, 1]; "points": [N, D]; "": from sample_shape
    sample_shape: tuple[int, ...] = ()  # one sample: [C, H, W] or [D]
    samplers: tuple[str, ...] = ()  # names SampleRequest.sampler may take (a fixed procedure may list its own name)
    default_sampler: str | None = None  # None: the model samples its own fixed way and has no sampler to choose
    min_steps: int = 1
    max_steps: int = 1
    default_steps: int = 1
    eta: bool = False  # takes the DDIM stochasticity eta
    num_classes: int = 0  # > 0: class_labels in [0, num_classes)
    prompts: bool = False  # text-conditional
    negative_prompts: bool = False  # guidance away from a text (needs prompts and guidance)
    condition_required: bool = False  # True: every request needs class_labels or prompts (no unconditional mode)
    guidance: bool = False  # classifier-free guidance_scale (needs a condition)
    default_guidance: float | None = None  # used for a conditioned request that sets no guidance_scale
    truncation: bool = False  # GAN truncation psi
    default_truncation: float | None = None
    params: Mapping[str, Param] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.output_kind:
            object.__setattr__(self, "output_kind", "points" if len(self.sample_shape) == 1 else "image")
        if self.output_kind not in OUTPUT_KINDS:
            raise ValueError(f"output_kind must be one of {list(OUTPUT_KINDS)}, got {self.output_kind!r}")
        object.__setattr__(self, "sample_shape", tuple(self.sample_shape))
        object.__setattr__(self, "samplers", tuple(self.samplers))
        if not 1 <= self.min_steps <= self.default_steps <= self.max_steps:
            raise ValueError(f"need 1 <= min_steps <= default_steps <= max_steps, got {self.min_steps}, "
                             f"{self.default_steps}, {self.max_steps}")
        if self.default_sampler is not None and self.default_sampler not in self.samplers:
            raise ValueError(f"default_sampler {self.default_sampler!r} is not in samplers {list(self.samplers)}")

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0 or self.prompts

    def check(self, request: SampleRequest) -> None:
        """Reject any field of ``request`` this model does not support, naming the field and the fix."""
        if request.num_samples < 1:
            raise InvalidArgument("seeds", "give at least one seed (one per sample)")
        if request.preview_every < 0:
            raise InvalidArgument("preview_every", f"must be >= 0 (0: no previews), got {request.preview_every}")
        self._check_sampling(request)
        self._check_conditioning(request)
        if request.truncation is not None:
            if not self.truncation:
                raise InvalidArgument("truncation", "this model has no truncation (a GAN mapping-network option); leave it unset")
            if not math.isfinite(request.truncation):
                raise InvalidArgument("truncation", f"psi must be a finite number (1: none, 0: the average), got {request.truncation}")
        for name, value in request.params.items():
            self.param_spec(name).value(name, value)

    def _check_sampling(self, request: SampleRequest) -> None:
        if request.sampler is not None and request.sampler not in self.samplers:
            if self.default_sampler is None:
                raise InvalidArgument("sampler", f"this model samples its own fixed way ({self._steps_text()}) and has "
                                      f"no samplers to choose from; leave sampler unset (got {request.sampler!r})")
            raise NotFound(f"no sampler named {request.sampler!r} for this model; available: {list(self.samplers)}")
        steps = request.steps
        if steps is not None and not self.min_steps <= steps <= self.max_steps:
            if self.min_steps == self.max_steps:
                raise InvalidArgument("steps", f"this model samples in exactly {self._steps_text()}; leave steps unset "
                                      f"or give {self.min_steps} (got {steps})")
            raise InvalidArgument("steps", f"must be between {self.min_steps} and {self.max_steps}, got {steps}")
        if request.eta != 0.0 and not self.eta:
            raise InvalidArgument("eta", f"eta is a DDIM option; this model takes none; leave it at 0 (got {request.eta})")

    def _check_conditioning(self, request: SampleRequest) -> None:
        n = request.num_samples
        labels, prompts = request.class_labels, request.prompts
        if labels is not None and prompts is not None:
            raise InvalidArgument("prompts", "give prompts or class_labels, not both")
        if self.condition_required and labels is None and prompts is None:
            what = "a prompt" if self.prompts and not self.num_classes else "a class label"
            raise InvalidArgument("class_labels" if self.num_classes else "prompts",
                                  f"this model has no unconditional mode: give {what} for every sample")
        if labels is not None:
            k = self.num_classes
            if k == 0:
                hint = "condition it with a prompt instead" if self.prompts else "leave the class label unset"
                raise InvalidArgument("class_labels", f"this model is not class-conditional; {hint}")
            if len(labels) != n:
                raise InvalidArgument("class_labels", f"give one label per seed: {len(labels)} labels for {n} seeds")
            bad = [c for c in labels if not 0 <= c < k]
            if bad:
                raise InvalidArgument("class_labels", f"labels {bad[:5]} are out of range; they must be in [0, {k - 1}] "
                                      f"({k} classes)")
        if prompts is not None:
            if not self.prompts:
                hint = "use a class label instead" if self.num_classes else "leave the prompt unset"
                raise InvalidArgument("prompts", f"this model is not text-conditional; {hint}")
            if len(prompts) != n:
                raise InvalidArgument("prompts", f"give one prompt per seed: {len(prompts)} prompts for {n} seeds")
        negatives = request.negative_prompts
        if negatives is not None:
            if not self.negative_prompts:
                raise InvalidArgument("negative_prompts", "this model takes no negative prompt; leave it unset")
            if prompts is None:
                raise InvalidArgument("negative_prompts", "a negative prompt needs a prompt to guide toward; give prompts too")
            if len(negatives) != n:
                raise InvalidArgument("negative_prompts", f"give one per seed: {len(negatives)} for {n} seeds")
        guidance = request.guidance_scale
        if guidance is not None:
            if not self.guidance:
                raise InvalidArgument("guidance_scale", "this model has no classifier-free guidance; leave it unset")
            if labels is None and prompts is None:
                what = "class_labels or prompts" if self.num_classes and self.prompts else "prompts" if self.prompts else "class_labels"
                raise InvalidArgument("guidance_scale", f"guidance needs a condition to guide toward: give {what}")
            if not (math.isfinite(guidance) and guidance >= 0):
                raise InvalidArgument("guidance_scale", f"must be >= 0 (1: plain conditional), got {guidance}")

    def param_spec(self, name: str) -> Param:
        spec = self.params.get(name)
        if spec is None:
            known = "; ".join(f"{k}: {p.describe()}" for k, p in self.params.items()) or "none"
            raise InvalidArgument("params", f"unknown parameter {name!r} for this model; known: {known}")
        return spec

    def param(self, request: SampleRequest, name: str) -> Any:
        """The checked value of family parameter ``name`` in ``request``, or its default."""
        spec = self.param_spec(name)
        value = request.params.get(name)
        return spec.default if value is None else spec.value(name, value)

    def resolved(self, sampler: str | None, steps: int | None) -> tuple[str | None, int | None]:
        """The sampler and steps a request with these settings runs, as far as they are known here.

        Another sampler than the default, without steps, runs that sampler's own default: None here.
        """
        if steps is None and sampler in (None, self.default_sampler):
            steps = self.default_steps
        return sampler or self.default_sampler, steps

    def _steps_text(self) -> str:
        if self.min_steps == self.max_steps:
            return f"{self.min_steps} step" + ("s" if self.min_steps != 1 else "")
        return f"{self.min_steps} to {self.max_steps} steps"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (params as one line each)."""
        out = asdict(self)
        out["sample_shape"] = list(self.sample_shape)
        out["samplers"] = list(self.samplers)
        out["params"] = {k: p.describe() for k, p in self.params.items()}
        return out
