"""Protobuf messages <-> genhub objects, with the request limits.

Validation happens here, before a request reaches a model's queue: every
violation is an ``InvalidArgument`` naming the proto field and its limit.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

import numpy as np
import torch
from google.protobuf.timestamp_pb2 import Timestamp

from hub.capabilities import Capabilities
from hub.errors import InvalidArgument
from hub.images import png_bytes, to_uint8
from hub.model import ParamValue, SampleRequest
from hub.v1 import generation_pb2, registry_pb2, types_pb2

# Request limits (the proto comments quote them; change both together).
MAX_NUM_SAMPLES = 64
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
PREVIEW_MAX_SIDE = 64  # previews are "low resolution": longest side at most this
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
MAX_TASK_CHARS = 256  # task.dataset and task.condition
MAX_REF_CHARS = 320  # a model reference: name (200) + ":" or "@" + version or alias (100)
MAX_NAME_CHARS = 200  # model names (hub.registry.refs)
MAX_ALIAS_CHARS = 100
MAX_PAGE_TOKEN_CHARS = 1024  # tokens list_models returns are a few hundred characters
SAMPLER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # a short identifier: ddpm, ddim, ...

# Invocation metadata with a Generate/StreamGenerate call's timeout in milliseconds (a positive number). Serve's
# gRPC proxy does not pass a call's deadline on to the deployments, so clients send it explicitly (hub.client
# does); the Ray backend stops sampling when it passes. The local server reads the real gRPC deadline instead.
TIMEOUT_METADATA = "genhub-timeout-ms"

FORMAT_PNG = types_pb2.IMAGE_FORMAT_PNG
FORMAT_TENSOR = types_pb2.IMAGE_FORMAT_RAW_TENSOR


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


def timeout_metadata(timeout_s: float) -> tuple[str, str]:
    """The ``TIMEOUT_METADATA`` entry for a call with ``timeout_s`` (rounded up: never earlier than the real deadline)."""
    return TIMEOUT_METADATA, str(max(1, math.ceil(timeout_s * 1000)))


def parse_timeout(metadata: Iterable[tuple[str, Any]]) -> float | None:
    """The timeout in seconds that invocation ``metadata`` carries under ``TIMEOUT_METADATA`` (None: not sent)."""
    values = [value for key, value in metadata if key == TIMEOUT_METADATA]
    if not values:
        return None
    text = values[-1].decode() if isinstance(values[-1], bytes) else str(values[-1])
    try:
        timeout_ms = float(text)
    except ValueError:
        timeout_ms = math.nan
    if not (math.isfinite(timeout_ms) and timeout_ms > 0):
        raise InvalidArgument(TIMEOUT_METADATA, f"metadata must be a positive number of milliseconds, got {clip(text)}")
    return timeout_ms / 1000


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
        params=parse_params(message.params),
        preview_every=preview_every,
    )
    return ParsedRequest(message.model, seed, request, message.format, task)


# SampleRequest fields -> the GenerateRequest fields a client set them through.
WIRE_FIELDS = {"class_labels": "class_label", "prompts": "prompt", "seeds": "num_samples"}


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


def clip(value: str, limit: int = 60) -> str:
    """``repr(value)``, shortened for an error message."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"


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


def param_message(value: ParamValue) -> types_pb2.ParamValue:
    """A Python value -> ParamValue (bool before int: True is an int in Python)."""
    if isinstance(value, bool):
        return types_pb2.ParamValue(bool_value=value)
    if isinstance(value, int):
        return types_pb2.ParamValue(int_value=value)
    if isinstance(value, float):
        return types_pb2.ParamValue(double_value=value)
    if isinstance(value, str):
        return types_pb2.ParamValue(string_value=value)
    raise InvalidArgument("params", f"values must be float, int, str or bool, got {type(value).__name__} {value!r}")


def resolve_format(requested: int, output_kind: str, model: str) -> int:
    """UNSPECIFIED -> PNG for image models, raw tensors for point models."""
    if output_kind == "points":
        if requested == FORMAT_PNG:
            raise InvalidArgument(
                "format", f"{model} produces 2D points, which have no PNG form; use IMAGE_FORMAT_RAW_TENSOR or leave it unset"
            )
        return FORMAT_TENSOR
    return requested or FORMAT_PNG


# -- tensors and images ---------------------------------------------------------------------


def tensor_message(sample: torch.Tensor) -> types_pb2.Tensor:
    """One sample ([C, H, W] or [2]) as float32 little-endian bytes."""
    array = np.ascontiguousarray(sample.detach().to("cpu", torch.float32).numpy(), dtype="<f4")
    return types_pb2.Tensor(shape=list(array.shape), dtype=types_pb2.DATA_TYPE_FLOAT32, data=array.tobytes())


def tensor_from_message(message: types_pb2.Tensor) -> torch.Tensor:
    """The inverse of ``tensor_message`` (float32 or uint8)."""
    dtypes = {types_pb2.DATA_TYPE_FLOAT32: "<f4", types_pb2.DATA_TYPE_UINT8: "u1"}
    if message.dtype not in dtypes:
        raise InvalidArgument("tensor.dtype", f"unsupported DataType {message.dtype}")
    array = np.frombuffer(message.data, dtype=dtypes[message.dtype]).reshape(tuple(message.shape))
    return torch.from_numpy(array.copy())


def image_messages(samples: torch.Tensor, fmt: int) -> list[types_pb2.Image]:
    """[N, C, H, W] (or [N, 2]) -> one Image per sample, in ``fmt``."""
    if fmt == FORMAT_PNG:
        return [types_pb2.Image(png=png_bytes(image)) for image in to_uint8(samples)]
    return [types_pb2.Image(tensor=tensor_message(sample)) for sample in samples]


def preview_messages(preview: torch.Tensor, fmt: int) -> list[types_pb2.Image]:
    """Low-resolution previews: images shrunk (area) so the longest side is at most PREVIEW_MAX_SIDE."""
    if preview.dim() == 4:  # [N, C, H, W]
        h, w = preview.shape[-2:]
        factor = math.ceil(max(h, w) / PREVIEW_MAX_SIDE)
        if factor > 1:
            preview = torch.nn.functional.avg_pool2d(preview.float(), factor, ceil_mode=True)
    return image_messages(preview, fmt)


# -- registry records -------------------------------------------------------------------------


def timestamp(value: datetime | None) -> Timestamp | None:
    """Registry times are naive UTC."""
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value)
    return stamp


PLUGIN_STATUS = {
    "loaded": registry_pb2.PLUGIN_STATUS_LOADED,
    "failed": registry_pb2.PLUGIN_STATUS_FAILED,
    "disabled": registry_pb2.PLUGIN_STATUS_DISABLED,
}


def plugin_message(info: Any, owners: dict[tuple[str, str], str]) -> registry_pb2.Plugin:
    """A PluginInfo plus what it contributes (from Contributions.owners)."""
    owned: dict[str, list[str]] = {}
    for (kind, name), plugin in owners.items():
        if plugin == info.name:
            owned.setdefault(kind, []).append(name)
    return registry_pb2.Plugin(
        name=info.name,
        version=info.version or "",
        status=PLUGIN_STATUS.get(info.status, registry_pb2.PLUGIN_STATUS_UNSPECIFIED),
        error=info.error or "",
        distribution=info.distribution or "",
        model_families=sorted(owned.get("model family", [])),
        samplers=sorted(owned.get("sampler", [])),
        datasets=sorted(owned.get("dataset", [])),
        pretrained_models=sorted(owned.get("pretrained model", [])),
    )


def model_message(record: Any, aliases: dict[str, int]) -> registry_pb2.Model:
    """A ModelRecord; ``aliases`` maps alias -> version number."""
    return registry_pb2.Model(
        name=record.name,
        family=record.family,
        plugin=record.plugin,
        description=record.description or "",
        create_time=timestamp(record.created_at),
        latest_version=record.latest_version or 0,
        version_count=record.num_versions,
        aliases=aliases,
    )


def version_ref(version: Any) -> types_pb2.ModelVersionRef:
    return types_pb2.ModelVersionRef(
        name=version.model, version=version.version, digest=version.artifact_digest, family=version.family
    )


def metric_message(m: Any) -> registry_pb2.Metric:
    """A MetricRecord."""
    return registry_pb2.Metric(
        name=m.name,
        value=m.value,
        data=m.data or "",
        num_samples=m.num_samples or 0,
        sampler=m.sampler or "",
        steps=m.steps or 0,
        hardware=m.hardware or "",
        details_json=json.dumps(m.details or {}, sort_keys=True, default=str),
        create_time=timestamp(m.created_at),
    )


def version_message(version: Any, metrics: Iterable[Any] = (), runs: Iterable[Any] = (), card: str | None = None) -> registry_pb2.ModelVersion:
    """A VersionRecord with its MetricRecords and TrainingRunRecords; ``card`` overrides the version's own."""
    return registry_pb2.ModelVersion(
        ref=version_ref(version),
        dataset=version.dataset,
        parent=version.parent or "",
        tags=list(version.tags),
        aliases=list(version.aliases),
        create_time=timestamp(version.created_at),
        config_json=json.dumps(version.config, sort_keys=True),
        card=card if card is not None else version.card or "",
        metrics=[metric_message(m) for m in metrics],
        training_runs=[
            registry_pb2.TrainingRun(
                command=r.command or "",
                seed=r.seed or 0,
                steps=r.steps or 0,
                wall_time_seconds=r.wall_time_s or 0.0,
                hardware=r.hardware or "",
                final_loss=r.losses[-1] if r.losses else None,
            )
            for r in runs
        ],
    )
