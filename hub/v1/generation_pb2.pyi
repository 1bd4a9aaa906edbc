from hub.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GenerateRequest(_message.Message):
    __slots__ = ("model", "task", "latency_budget_ms", "num_samples", "seed", "sampler", "steps", "eta", "guidance_scale", "truncation", "class_label", "prompt", "params", "format", "negative_prompt")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.ParamValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.ParamValue, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    LATENCY_BUDGET_MS_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    ETA_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    CLASS_LABEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    model: str
    task: Task
    latency_budget_ms: float
    num_samples: int
    seed: int
    sampler: str
    steps: int
    eta: float
    guidance_scale: float
    truncation: float
    class_label: int
    prompt: str
    params: _containers.MessageMap[str, _types_pb2.ParamValue]
    format: _types_pb2.ImageFormat
    negative_prompt: str
    def __init__(self, model: _Optional[str] = ..., task: _Optional[_Union[Task, _Mapping]] = ..., latency_budget_ms: _Optional[float] = ..., num_samples: _Optional[int] = ..., seed: _Optional[int] = ..., sampler: _Optional[str] = ..., steps: _Optional[int] = ..., eta: _Optional[float] = ..., guidance_scale: _Optional[float] = ..., truncation: _Optional[float] = ..., class_label: _Optional[int] = ..., prompt: _Optional[str] = ..., params: _Optional[_Mapping[str, _types_pb2.ParamValue]] = ..., format: _Optional[_Union[_types_pb2.ImageFormat, str]] = ..., negative_prompt: _Optional[str] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("dataset", "condition")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    condition: str
    def __init__(self, dataset: _Optional[str] = ..., condition: _Optional[str] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("images", "model_version", "seed", "generation_id", "duration_seconds", "queue_seconds", "batch_samples", "routed_reason", "sampler", "steps")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    ROUTED_REASON_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_types_pb2.Image]
    model_version: _types_pb2.ModelVersionRef
    seed: int
    generation_id: int
    duration_seconds: float
    queue_seconds: float
    batch_samples: int
    routed_reason: str
    sampler: str
    steps: int
    def __init__(self, images: _Optional[_Iterable[_Union[_types_pb2.Image, _Mapping]]] = ..., model_version: _Optional[_Union[_types_pb2.ModelVersionRef, _Mapping]] = ..., seed: _Optional[int] = ..., generation_id: _Optional[int] = ..., duration_seconds: _Optional[float] = ..., queue_seconds: _Optional[float] = ..., batch_samples: _Optional[int] = ..., routed_reason: _Optional[str] = ..., sampler: _Optional[str] = ..., steps: _Optional[int] = ...) -> None: ...

class StreamGenerateRequest(_message.Message):
    __slots__ = ("request", "preview_every")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_EVERY_FIELD_NUMBER: _ClassVar[int]
    request: GenerateRequest
    preview_every: int
    def __init__(self, request: _Optional[_Union[GenerateRequest, _Mapping]] = ..., preview_every: _Optional[int] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("step", "total", "previews")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PREVIEWS_FIELD_NUMBER: _ClassVar[int]
    step: int
    total: int
    previews: _containers.RepeatedCompositeFieldContainer[_types_pb2.Image]
    def __init__(self, step: _Optional[int] = ..., total: _Optional[int] = ..., previews: _Optional[_Iterable[_Union[_types_pb2.Image, _Mapping]]] = ...) -> None: ...

class StreamGenerateResponse(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    result: GenerateResponse
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., result: _Optional[_Union[GenerateResponse, _Mapping]] = ...) -> None: ...
