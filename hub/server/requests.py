"""GenerateRequest -> a validated ``ParsedRequest`` (a ``SampleRequest`` plus what routing and logging need), with
the request limits. Every violation is an ``InvalidArgument`` naming the proto field and its limit, before the
request reaches a model's queue. Shared by every wire format that carries a generation request.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np

from hub.capabilities import Capabilities
from hub.codecs import clip
from hub.errors import InvalidArgument
from hub.model import ParamValue, SampleRequest
from hub.v1 import generation_pb2, types_pb2

# Request limits (the proto comments quote them; change both together).
MAX_NUM_SAMPLES = 65536  # a bound on the seeds list; what a request may cost is the engine's max_request_cost
MAX_STEPS = 1000
MAX_SEED = 2**63 - 1  # the registry stores seeds as signed 64-bit integers
MAX_ETA = 1.0
MAX_GUIDANCE = 50.0
MAX_TRUNCATION = 1.0
MAX_PROMPT_CHARS = 1000
MAX_PARAMS = 32
MAX_PARAM_KEY_CHARS = 64
MAX_PARAM_STRING_CHARS = 1024
MAX_PREVIEW_EVERY = 1000
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
MAX_TASK_CHARS = 256  # task.dataset and task.condition
MAX_REF_CHARS = 320  # a model reference: name (200) + ":" or "@" + version or alias (100)
MAX_NAME_CHARS = 200  # model names (hub.registry.refs)
MAX_ALIAS_CHARS = 100
MAX_PAGE_TOKEN_CHARS = 1024  # tokens list_models returns are a few hundred characters
SAMPLER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # a short identifier: ddpm, ddim, ...


@dataclass(frozen=True)
class TaskSpec:
    """A validated GenerateRequest.task with its latency budget."""

    dataset: str
    condition: str | None  # class name or index; None: unconditional
    budget_ms: float


@dataclass
class ParsedRequest:
    """A validated GenerateRequest: what the batcher needs, and what to log."""

    model: str  # the model reference; for a task request, the routed version's ref once routed ("" before)
    seed: int
    request: SampleRequest
    format: int  # types_pb2.ImageFormat; UNSPECIFIED is resolved per model later
    task: TaskSpec | None = None  # set when the request routes by task instead of naming a model
    routed_reason: str = ""  # Route.describe() once a task request is routed


def parse_task(message: generation_pb2.GenerateRequest) -> TaskSpec | None:
    """Exactly one of ``model`` and ``task``; a task needs a positive ``latency_budget_ms``."""
    has_task, has_budget = message.HasField("task"), message.HasField("latency_budget_ms")
    if message.model and has_task:
        raise InvalidArgument("model, task", "give exactly one of them: a model reference, or a task with latency_budget_ms to route by")
    if not message.model and not has_task:
        raise InvalidArgument(
            "model", "is required; name a model as NAME, NAME:VERSION or NAME@ALIAS, or leave it empty and route by task "
            "(with latency_budget_ms)"
        )
    if not has_task:
        if has_budget:
            raise InvalidArgument("latency_budget_ms", "applies only to task requests; leave it unset when naming a model")
        return None
    task = message.task
    if not task.dataset:
        raise InvalidArgument("task.dataset", "is required; name the dataset the samples should look like, e.g. digits")
    for field_name in ("dataset", "condition"):
        if len(getattr(task, field_name)) > MAX_TASK_CHARS:
            raise InvalidArgument(f"task.{field_name}", f"must be at most {MAX_TASK_CHARS} characters, got {len(getattr(task, field_name))}")
    if not has_budget:
        raise InvalidArgument("latency_budget_ms", "is required with task: the p50 latency in milliseconds one sample may take")
    budget = message.latency_budget_ms
    if not math.isfinite(budget) or budget <= 0:
        raise InvalidArgument("latency_budget_ms", f"must be a positive, finite number of milliseconds, got {budget:g}")
    return TaskSpec(task.dataset, task.condition or None, float(budget))


def parse_generate(message: generation_pb2.GenerateRequest, preview_every: int = 0) -> ParsedRequest:
    """Validate a GenerateRequest and build the SampleRequest it asks for.

    A task request comes back with ``task`` set and ``model`` empty: routing (``hub.server.services.target``)
    fills in the version and the settings its latency was measured with.
    """
    check_length("model", message.model, MAX_REF_CHARS)
    task = parse_task(message)
    if message.sampler and not SAMPLER_RE.fullmatch(message.sampler):
        raise InvalidArgument("sampler", f"must be a sampler name of 1 to 64 letters, digits, '.', '_' or '-' (e.g. ddim), "
                                         f"got {clip(message.sampler)}")
    num_samples = message.num_samples or 1
    if num_samples > MAX_NUM_SAMPLES:
        raise InvalidArgument("num_samples", f"must be between 1 and {MAX_NUM_SAMPLES}, got {num_samples}")
    if message.HasField("seed"):
        seed = message.seed
        if seed > MAX_SEED:
            raise InvalidArgument("seed", f"must be between 0 and 2^63-1 ({MAX_SEED}), got {seed}")
    else:
        seed = secrets.randbits(63)  # returned in the response, so the images stay reproducible
    if message.steps > MAX_STEPS:
        raise InvalidArgument("steps", f"must be between 1 and {MAX_STEPS} (or 0 for the model's default), got {message.steps}")
    eta = round(_check_range("eta", _f32(message.eta), 0.0, MAX_ETA), 6)
    guidance = _optional_float(message, "guidance_scale", 0.0, MAX_GUIDANCE)
    truncation = _optional_float(message, "truncation", 0.0, MAX_TRUNCATION)
    if message.format not in types_pb2.ImageFormat.values():
        raise InvalidArgument("format", f"unknown ImageFormat {message.format}; use IMAGE_FORMAT_PNG or IMAGE_FORMAT_RAW_TENSOR")
    if preview_every > MAX_PREVIEW_EVERY:
        raise InvalidArgument("preview_every", f"must be between 0 and {MAX_PREVIEW_EVERY}, got {preview_every}")
    class_labels: list[int] | None = None
    prompts: list[str] | None = None
    which = message.WhichOneof("conditioning")
    if which == "class_label":
        if message.class_label < 0:
            raise InvalidArgument("class_label", f"must be >= 0, got {message.class_label}")
        class_labels = [message.class_label] * num_samples
    elif which == "prompt":
        if len(message.prompt) > MAX_PROMPT_CHARS:
            raise InvalidArgument("prompt", f"must be at most {MAX_PROMPT_CHARS} characters, got {len(message.prompt)}")
        prompts = [message.prompt] * num_samples
    negative_prompts = None
    if message.negative_prompt:
        check_length("negative_prompt", message.negative_prompt, MAX_PROMPT_CHARS)
        negative_prompts = [message.negative_prompt] * num_samples
    request = SampleRequest.from_seed(
        seed,
        num_samples,
        sampler=message.sampler or None,
        steps=message.steps or None,
        eta=eta,
        guidance_scale=guidance,
        truncation=truncation,
        class_labels=class_labels,
        prompts=prompts,
        negative_prompts=negative_prompts,
        params=parse_params(message.params),
        preview_every=preview_every,
    )
    return ParsedRequest(message.model, seed, request, message.format, task)


# SampleRequest fields -> the GenerateRequest fields a client set them through.
WIRE_FIELDS = {"class_labels": "class_label", "prompts": "prompt", "negative_prompts": "negative_prompt", "seeds": "num_samples"}


def check_supported(capabilities: Capabilities, request: SampleRequest) -> None:
    """``Capabilities.check``, its errors naming the GenerateRequest field (``class_label``, not ``class_labels``)."""
    try:
        capabilities.check(request)
    except InvalidArgument as exc:
        wire = WIRE_FIELDS.get(exc.field)
        if wire is None:
            raise
        raise InvalidArgument(wire, str(exc)[len(exc.field) + 2 :]) from None


def check_length(field: str, value: str, limit: int) -> str:
    """``value`` if it has at most ``limit`` characters; checked before anything else reads it."""
    if len(value) > limit:
        raise InvalidArgument(field, f"must be at most {limit} characters, got {len(value)}")
    return value


def annotate_response(response: generation_pb2.GenerateResponse, parsed: ParsedRequest) -> generation_pb2.GenerateResponse:
    """Fill in the settings used and, for a routed request, why that version was chosen."""
    response.sampler = parsed.request.sampler or ""
    response.steps = parsed.request.steps or 0
    response.routed_reason = parsed.routed_reason
    return response


def _check_range(field: str, value: float, low: float, high: float) -> float:
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidArgument(field, f"must be between {low:g} and {high:g}, got {value:g}")
    return float(value)


def _optional_float(message: Any, field: str, low: float, high: float) -> float | None:
    if not message.HasField(field):
        return None
    # float32 on the wire: round so that 0.7 stays 0.7 (not 0.699999988), as it is in-process.
    return round(_check_range(field, _f32(getattr(message, field)), low, high), 6)


def _f32(value: float) -> float:
    return float(np.float32(value).item())


def parse_params(params: Any) -> dict[str, ParamValue]:
    """map<string, ParamValue> -> a plain dict of typed Python values."""
    if len(params) > MAX_PARAMS:
        raise InvalidArgument("params", f"at most {MAX_PARAMS} entries, got {len(params)}")
    result: dict[str, ParamValue] = {}
    for key in sorted(params):
        if not key or len(key) > MAX_PARAM_KEY_CHARS:
            raise InvalidArgument("params", f"keys must be 1 to {MAX_PARAM_KEY_CHARS} characters, got {clip(key)}")
        value = params[key]
        kind = value.WhichOneof("kind")
        if kind is None:
            raise InvalidArgument(f"params[{key}]", "no value set; set one of double_value, int_value, string_value, bool_value")
        item = getattr(value, kind)
        if kind == "double_value" and not math.isfinite(item):
            raise InvalidArgument(f"params[{key}]", f"must be a finite number, got {item}")
        if kind == "string_value" and len(item) > MAX_PARAM_STRING_CHARS:
            raise InvalidArgument(f"params[{key}]", f"strings must be at most {MAX_PARAM_STRING_CHARS} characters, got {len(item)}")
        result[key] = item
    return result
