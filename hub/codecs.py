"""Wire codecs shared by the client and the server: tensors and PNGs <-> ``hub.v1`` messages, family parameters,
output formats, and the timeout metadata. No request validation here (``hub.server.requests``) and no registry
messages (``hub.server.convert``).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import torch

from hub.errors import InvalidArgument
from hub.images import png_bytes, to_uint8
from hub.model import ParamValue
from hub.v1 import types_pb2

PREVIEW_MAX_SIDE = 64  # previews are "low resolution": longest side at most this

# Invocation metadata with a Generate/StreamGenerate call's timeout in milliseconds (a positive number). Serve's
# gRPC proxy does not pass a call's deadline on to the deployments, so clients send it explicitly (hub.client
# does); the Ray backend stops sampling when it passes. The local server reads the real gRPC deadline instead.
TIMEOUT_METADATA = "genhub-timeout-ms"

FORMAT_PNG = types_pb2.IMAGE_FORMAT_PNG
FORMAT_TENSOR = types_pb2.IMAGE_FORMAT_RAW_TENSOR


def clip(value: str, limit: int = 60) -> str:
    """``repr(value)``, shortened for an error message."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"


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
