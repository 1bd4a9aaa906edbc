"""The Open Inference Protocol (KServe V2, package ``inference``) <-> genhub's request and result types.

One execution path, two wire formats: a ``ModelInferRequest`` is turned into the ``hub.v1`` GenerateRequest it
means (each input is the GenerateRequest field of the same name) and validated by
``hub.server.convert.parse_generate``, so both APIs share defaults, limits and error messages; the result is the
GenerateResponse's raw tensors, returned as one output tensor. Used by the local servicer
(``hub.server.inference_service``) and the Ray ingress (``hub.ray.app``); it knows neither transport.

    inputs (each optional, shape [1])   seed UINT64, num_samples INT32, steps INT32, sampler BYTES, eta FP32,
                                        guidance_scale FP32, truncation FP32, class_label INT32, prompt BYTES,
                                        negative_prompt BYTES (every scalar GenerateRequest field but latency_budget_ms)
    outputs                             images UINT8 [N, H, W, C] (image models), samples FP32 [N, D] (points)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf.descriptor import FieldDescriptor

from hub.errors import InvalidArgument
from hub.images import to_uint8
from hub.inference import grpc_predict_v2_pb2 as pb
from hub.request_fields import FIELDS
from hub.server import convert
from hub.v1 import generation_pb2, types_pb2

SERVER_NAME = "genhub"
EXTENSIONS: tuple[str, ...] = ()  # none of the protocol's optional extensions (model repository, statistics, ...)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name  # inference.GRPCInferenceService
IMAGES, SAMPLES = "images", "samples"
_DATATYPES = {  # hub.v1 field type -> the protocol's datatype (uint32 as INT32: a negative value is refused below)
    FieldDescriptor.TYPE_UINT64: "UINT64", FieldDescriptor.TYPE_UINT32: "INT32", FieldDescriptor.TYPE_INT32: "INT32",
    FieldDescriptor.TYPE_INT64: "INT64", FieldDescriptor.TYPE_FLOAT: "FP32", FieldDescriptor.TYPE_DOUBLE: "FP64",
    FieldDescriptor.TYPE_STRING: "BYTES", FieldDescriptor.TYPE_BOOL: "BOOL",
}
ROUTING = ("latency_budget_ms",)  # hub.v1's task routing; the protocol names its model
# name -> datatype: every scalar GenerateRequest field (hub.request_fields), so a new one is an input with no edit here
_FIRST = ("seed", "num_samples", "steps", "sampler")  # the order ModelMetadata has always listed; the rest in proto order
INPUTS: dict[str, str] = {
    name: _DATATYPES[FIELDS[name].proto_type]
    for name in sorted((n for n in FIELDS if n not in ROUTING), key=lambda n: (n not in _FIRST, _FIRST.index(n) if n in _FIRST else 0))
}
TIMEOUT_PARAMETER = "timeout"  # Triton's per-request timeout parameter, in microseconds
MAX_VERSION_CHARS = 18  # model_version: digits of a positive int64
_RAW = {"UINT64": "<u8", "INT32": "<i4", "INT64": "<i8", "FP32": "<f4", "FP64": "<f8", "BOOL": "?"}  # little-endian
_TYPED = {"UINT64": "uint64_contents", "INT32": "int_contents", "INT64": "int64_contents", "FP32": "fp32_contents",
          "FP64": "fp64_contents", "BYTES": "bytes_contents", "BOOL": "bool_contents"}
_CONTENT_FIELDS = tuple(pb.InferTensorContents.DESCRIPTOR.fields_by_name)
_UNSIGNED = tuple(n for n, f in FIELDS.items() if f.unsigned)  # in hub.v1: a negative value is out of range, not a wrap


def model_ref(name: str, version: str, *, name_field: str = "model_name", version_field: str = "model_version") -> str:
    """A genhub model reference from the protocol's (name, version): "" keeps ``name`` as given, "3" means ``name:3``."""
    if not name:
        raise InvalidArgument(name_field, "is required; give a genhub model reference: NAME, NAME:VERSION or NAME@ALIAS")
    convert.check_length(name_field, name, convert.MAX_REF_CHARS)  # hub.v1's limit on a model reference
    if not version:
        return name
    if len(version) > MAX_VERSION_CHARS or not version.isascii() or not version.isdigit() or int(version) < 1:
        raise InvalidArgument(version_field, f"must be a version number such as 3 (or empty: the reference as given), got {version[:40]!r}")
    if ":" in name or "@" in name:
        raise InvalidArgument(version_field, f"give the version in {name_field} ({name!r}) or in {version_field}, not both")
    return f"{name}:{int(version)}"


def parse_infer(message: pb.ModelInferRequest) -> tuple[convert.ParsedRequest, float | None]:
    """Validate a ModelInferRequest; returns the parsed request and its ``timeout`` parameter in seconds (None: unset)."""
    ref = model_ref(message.model_name, message.model_version)
    request = generation_pb2.GenerateRequest(model=ref, format=types_pb2.IMAGE_FORMAT_RAW_TENSOR)
    values = decode_inputs(message)
    if "class_label" in values and "prompt" in values:
        raise InvalidArgument("class_label, prompt", "give at most one of them: a class label or a prompt conditions a request")
    for name, value in values.items():
        if name in _UNSIGNED and value < 0:
            raise InvalidArgument(name, f"must be >= 0, got {value}")
        setattr(request, name, value)
    for output in message.outputs:
        if output.name not in (IMAGES, SAMPLES):
            raise InvalidArgument(f"outputs[{output.name[:64]}]", f"unknown output; genhub models return {IMAGES!r} or {SAMPLES!r}")
        if output.parameters:
            raise InvalidArgument(f"outputs[{output.name}].parameters", f"genhub takes no output parameters, got {sorted(output.parameters)[:5]}")
    timeout = None
    for key, parameter in message.parameters.items():
        if key == TIMEOUT_PARAMETER:
            timeout = _timeout(parameter)
        else:
            request.params[key].CopyFrom(_param_value(key, parameter))
    return convert.parse_generate(request), timeout


def decode_inputs(message: pb.ModelInferRequest) -> dict[str, Any]:
    """Input name -> its one element (int, float or str), from raw or typed contents (not both)."""
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise InvalidArgument("raw_input_contents", f"has {len(raw)} entries for {len(message.inputs)} inputs; give one per input, in order")
    values: dict[str, Any] = {}
    for i, tensor in enumerate(message.inputs):
        name = tensor.name
        label = name[:64]
        if name not in INPUTS:
            raise InvalidArgument(f"inputs[{label}]", f"unknown input; genhub takes {', '.join(INPUTS)}")
        if name in values:
            raise InvalidArgument(name, "is given twice; give each input at most once")
        datatype = INPUTS[name]
        if tensor.datatype != datatype:
            raise InvalidArgument(name, f"must have datatype {datatype}, got {tensor.datatype[:16]!r}")
        if list(tensor.shape) != [1]:
            raise InvalidArgument(name, f"must have shape [1], got {list(tensor.shape)[:8]}")
        if tensor.parameters:
            raise InvalidArgument(name, f"takes no input parameters, got {sorted(tensor.parameters)[:5]}")
        if raw:
            if tensor.HasField("contents"):
                raise InvalidArgument(name, "sets contents while the request uses raw_input_contents; use one of the two for every input")
            values[name] = _raw_element(name, datatype, raw[i])
        else:
            values[name] = _typed_element(name, datatype, tensor)
    return values


def _raw_element(name: str, datatype: str, data: bytes) -> Any:
    if datatype == "BYTES":  # a 4-byte little-endian length, then that many bytes
        length = int.from_bytes(data[:4], "little") if len(data) >= 4 else -1
        if length != len(data) - 4:
            raise InvalidArgument(name, f"raw BYTES content must be a 4-byte little-endian length and that many bytes ({len(data)} bytes given)")
        return _text(name, data[4:])
    dtype = np.dtype(_RAW[datatype])
    if len(data) != dtype.itemsize:
        raise InvalidArgument(name, f"raw content of one {datatype} element must be {dtype.itemsize} bytes, got {len(data)}")
    return np.frombuffer(data, dtype=dtype)[0].item()


def _typed_element(name: str, datatype: str, tensor: pb.ModelInferRequest.InferInputTensor) -> Any:
    if not tensor.HasField("contents"):
        raise InvalidArgument(name, "has no data: set contents, or raw_input_contents for every input")
    wanted = _TYPED[datatype]
    others = [f for f in _CONTENT_FIELDS if f != wanted and len(getattr(tensor.contents, f))]
    if others:
        raise InvalidArgument(name, f"{datatype} elements go in contents.{wanted}, not contents.{others[0]}")
    elements = getattr(tensor.contents, wanted)
    if len(elements) != 1:
        raise InvalidArgument(name, f"must have exactly one element in contents.{wanted} (shape [1]), got {len(elements)}")
    value = elements[0]
    return _text(name, value) if datatype == "BYTES" else value


def _text(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(name, "must be UTF-8 text") from None


def _timeout(parameter: pb.InferParameter) -> float:
    kind = parameter.WhichOneof("parameter_choice")
    value = getattr(parameter, kind) if kind in ("int64_param", "uint64_param") else None
    if value is None or value <= 0:
        raise InvalidArgument(f"parameters[{TIMEOUT_PARAMETER}]", "must be a positive integer number of microseconds")
    return value / 1e6


def _param_value(key: str, parameter: pb.InferParameter) -> types_pb2.ParamValue:
    """A request parameter -> hub.v1 ParamValue (the model's family-specific params); parse_generate checks them."""
    kind = parameter.WhichOneof("parameter_choice")
    if kind == "bool_param":
        return types_pb2.ParamValue(bool_value=parameter.bool_param)
    if kind == "int64_param":
        return types_pb2.ParamValue(int_value=parameter.int64_param)
    if kind == "uint64_param":
        if parameter.uint64_param > 2**63 - 1:
            raise InvalidArgument(f"parameters[{key[:64]}]", f"must be at most 2^63-1, got {parameter.uint64_param}")
        return types_pb2.ParamValue(int_value=parameter.uint64_param)
    if kind == "double_param":
        return types_pb2.ParamValue(double_value=parameter.double_param)
    if kind == "string_param":
        return types_pb2.ParamValue(string_value=parameter.string_param)
    return types_pb2.ParamValue()  # no value: parse_generate names the parameter


def infer_request(model: str, version: str = "", **values: Any) -> pb.ModelInferRequest:
    """A ModelInferRequest with raw contents, one [1]-shaped input per keyword (for Python callers without tritonclient)."""
    request = pb.ModelInferRequest(model_name=model, model_version=version)
    for name, value in values.items():
        datatype = INPUTS[name]
        request.inputs.add(name=name, datatype=datatype, shape=[1])
        if datatype == "BYTES":
            data = str(value).encode()
            request.raw_input_contents.append(len(data).to_bytes(4, "little") + data)
        else:
            request.raw_input_contents.append(np.array([value], dtype=_RAW[datatype]).tobytes())
    return request


# -- results --------------------------------------------------------------------------------------


def samples_array(response: generation_pb2.GenerateResponse) -> np.ndarray:
    """The raw float32 tensors of a GenerateResponse, stacked: [N, C, H, W] or [N, D]."""
    arrays = [np.frombuffer(image.tensor.data, dtype="<f4").reshape(tuple(image.tensor.shape)) for image in response.images]
    return np.stack(arrays)


def infer_response(message: pb.ModelInferRequest, response: generation_pb2.GenerateResponse) -> pb.ModelInferResponse:
    """A GenerateResponse (raw tensors) as the ModelInferResponse to ``message``: one output, in raw_output_contents."""
    samples = samples_array(response)
    if samples.ndim == 4:  # images: the same uint8 pixels hub.v1 encodes as PNG
        name, datatype, data = IMAGES, "UINT8", to_uint8(samples)
    else:
        name, datatype, data = SAMPLES, "FP32", samples.astype("<f4", copy=False)
    requested = [o.name for o in message.outputs]
    if requested and name not in requested:
        raise InvalidArgument(f"outputs[{requested[0]}]", f"model {message.model_name} returns {name!r}, not {requested[0]!r}")
    version = response.model_version
    return pb.ModelInferResponse(
        model_name=message.model_name,
        model_version=str(version.version),
        id=message.id,
        outputs=[pb.ModelInferResponse.InferOutputTensor(name=name, datatype=datatype, shape=list(data.shape))],
        raw_output_contents=[np.ascontiguousarray(data).tobytes()],
        parameters={  # what hub.v1 reports: enough to reproduce the samples and find them in the generation log
            "seed": pb.InferParameter(int64_param=response.seed),  # int64: KServe's InferParameter has no uint64
            "generation_id": pb.InferParameter(int64_param=response.generation_id),
            "digest": pb.InferParameter(string_param=version.digest),
            "sampler": pb.InferParameter(string_param=response.sampler),
            "steps": pb.InferParameter(int64_param=response.steps),
            "batch_samples": pb.InferParameter(int64_param=response.batch_samples),  # samples in its sampling call
        },
    )


# -- metadata -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    """What ModelMetadata says of a model: its platform, the inputs it accepts and its one output."""

    platform: str
    inputs: tuple[str, ...]
    output: tuple[str, str, tuple[int, ...]]  # name, datatype, shape (-1: any size)


def signature(model: Any, family: str) -> Signature:
    """Read from a loaded model's capabilities: the inputs it accepts, its output kind and sample shape."""
    caps = model.capabilities
    accepted = {  # a field not named here (a new one) is listed for every model; its validation answers for it
        "seed": True, "num_samples": True,
        "steps": caps.default_sampler is not None, "sampler": caps.default_sampler is not None,  # a choice of sampler
        "eta": caps.eta, "guidance_scale": caps.guidance, "truncation": caps.truncation,
        "class_label": caps.num_classes > 0, "prompt": caps.prompts, "negative_prompt": caps.negative_prompts,
    }
    shape = [int(d) for d in caps.sample_shape]
    if caps.output_kind == "points":
        output = (SAMPLES, "FP32", (-1, shape[0] if len(shape) == 1 else -1))
    else:
        c, h, w = shape if len(shape) == 3 else (-1, -1, -1)
        output = (IMAGES, "UINT8", (-1, h, w, c))
    return Signature(f"genhub-{family}", tuple(a for a in INPUTS if accepted.get(a, True)), output)


def metadata_response(name: str, versions: list[int], sig: Signature) -> pb.ModelMetadataResponse:
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=name,
        versions=[str(v) for v in versions],
        platform=sig.platform,
        inputs=[tensor(name=i, datatype=INPUTS[i], shape=[1]) for i in sig.inputs],
        outputs=[tensor(name=sig.output[0], datatype=sig.output[1], shape=list(sig.output[2]))],
    )


def server_metadata() -> pb.ServerMetadataResponse:
    from hub import __version__

    return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=list(EXTENSIONS))
