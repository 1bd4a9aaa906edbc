"""A Python client for a genhub server (package hub.v1 over gRPC).

    from hub.client import Client

    with Client("127.0.0.1:50051") as client:
        for model in client.list_models():
            print(model.name, model.latest_version)
        result = client.generate("ddpm-digits", num_samples=8, seed=0)
        result.samples  # [8, C, H, W] float tensor in [-1, 1]
        routed = client.generate(task="digits", latency_budget_ms=50)  # the server picks the version
        routed.model, routed.routed_reason

Errors come back as the same ``hub.errors`` classes the server raised
(InvalidArgument, NotFound, ResourceExhausted, ...), with the server's message.

Authentication: ``token=`` is sent on every call as ``authorization: Bearer``;
without it the client uses ``$GENHUB_TOKEN``, else ``tokens.json`` in ``home``
(default: the genhub home), the generate token for reads and generation and the
admin token for SetAlias. TLS: ``tls=ClientTls(ca=..., cert=..., key=...)``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import grpc
import numpy as np
import torch

from hub import auth
from hub.errors import InvalidArgument
from hub.model import ParamValue
from hub.codecs import param_message, tensor_from_message, timeout_metadata
from hub.request_fields import set_fields
from hub.server.auth import METHOD_SCOPES
from hub.server.status import error_for
from hub.tls import ClientTls
from hub.v1 import generation_pb2, generation_pb2_grpc, registry_pb2, registry_pb2_grpc, types_pb2

FORMATS = {
    None: types_pb2.IMAGE_FORMAT_UNSPECIFIED,
    "png": types_pb2.IMAGE_FORMAT_PNG,
    "tensor": types_pb2.IMAGE_FORMAT_RAW_TENSOR,
}
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass
class RemoteGeneration:
    """A finished generation: samples decoded to one tensor, plus how to reproduce them."""

    samples: torch.Tensor  # [N, C, H, W] in [-1, 1] (PNG: quantised to 8 bits), or [N, 2] points
    model: str  # "name:version"
    digest: str  # weights digest of that version
    seed: int
    generation_id: int
    duration_s: float
    queue_s: float
    batch_samples: int
    response: generation_pb2.GenerateResponse = field(repr=False)
    sampler: str = ""  # sampler used ("" : the family's default)
    steps: int = 0  # steps used (0: the model's default)
    routed_reason: str = ""  # why the server chose ``model`` for a task request; "" when a model was named


@dataclass(frozen=True)
class StepProgress:
    """One progress event of a streaming generation."""

    step: int
    total: int
    previews: torch.Tensor | None  # [N, C, h, w] low-resolution estimates, on preview steps only


def decode_image(image: types_pb2.Image) -> torch.Tensor:
    """One Image -> a float tensor: [C, H, W] in [-1, 1] (PNG or raw), or [2] for a point."""
    kind = image.WhichOneof("content")
    if kind == "tensor":
        return tensor_from_message(image.tensor)
    if kind == "png":
        from PIL import Image

        array = np.asarray(Image.open(io.BytesIO(image.png)))  # [H, W] or [H, W, C] uint8
        if array.ndim == 2:
            array = array[..., None]
        return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 127.5 - 1.0
    raise ValueError("the server sent an Image with no content")


def decode_images(images: Any) -> torch.Tensor:
    return torch.stack([decode_image(image) for image in images])


def build_request(
    model: str | None = None,
    *,
    task: str | None = None,
    condition: str | int | None = None,
    params: Mapping[str, ParamValue] | None = None,
    format: str | None = None,
    **fields: Any,
) -> generation_pb2.GenerateRequest:
    """A GenerateRequest from keyword arguments (format: None, "png" or "tensor").

    ``fields`` are GenerateRequest's scalar fields by name (num_samples, seed, sampler, steps, eta, guidance_scale,
    truncation, class_label, prompt, latency_budget_ms, and any the proto gains: ``hub.request_fields``); None
    leaves one unset. Name a ``model``, or route by ``task`` (a dataset name, optionally with a class
    ``condition``, by name or index) within ``latency_budget_ms``; the server checks that exactly one is given.
    """
    if condition is not None and task is None:
        raise InvalidArgument("condition", "applies only with task; use class_label with a named model")
    if format not in FORMATS:
        raise InvalidArgument("format", f"must be one of {sorted(k for k in FORMATS if k)} or None, got {format!r}")
    message = generation_pb2.GenerateRequest(
        model=model or "", format=FORMATS[format], params={k: param_message(v) for k, v in (params or {}).items()},
    )
    if task is not None:
        message.task.dataset = task
        message.task.condition = "" if condition is None else str(condition)
    set_fields(message, fields)
    return message


class Client:
    """A blocking client; one channel, reused for every call. Use as a context manager."""

    def __init__(self, address: str, *, timeout: float | None = None, token: str | None = None,
                 home: str | Path | None = None, tls: ClientTls | None = None) -> None:
        self.address = address
        self.timeout = timeout  # default deadline per call, seconds; None: none
        # scope -> the token sent for calls needing it (None: send none, the server answers UNAUTHENTICATED)
        self._tokens = {scope: token or auth.client_token(scope, home) for scope in auth.SCOPES}
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
        if tls is not None:
            self._raw_channel = grpc.secure_channel(address, tls.credentials(), options=options)
        else:
            self._raw_channel = grpc.insecure_channel(address, options=options)
        # Every call on this channel carries the token, also from stubs made on ``client.channel``.
        self.channel = grpc.intercept_channel(self._raw_channel, _TokenInterceptor(self))
        self.registry = registry_pb2_grpc.RegistryServiceStub(self.channel)
        self.generation = generation_pb2_grpc.GenerationServiceStub(self.channel)

    def close(self) -> None:
        self._raw_channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the server accepts connections."""
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise error_for(grpc.StatusCode.UNAVAILABLE, f"no server answered at {self.address} within {timeout:g} s") from None

    def token_for(self, method: str) -> str | None:
        """The token sent with ``method`` (``/package.Service/Method``): admin for SetAlias, generate otherwise."""
        return self._tokens[auth.ADMIN if METHOD_SCOPES.get(method) == auth.ADMIN else auth.GENERATE]

    def _call(self, method: Any, request: Any, timeout: float | None = None, *, send_timeout: bool = False) -> Any:
        timeout = timeout if timeout is not None else self.timeout
        try:
            return method(request, timeout=timeout, metadata=_timeout_metadata(timeout) if send_timeout else None)
        except grpc.RpcError as exc:
            raise error_for(exc.code(), exc.details() or "") from exc

    # -- registry ---------------------------------------------------------------------------

    def list_plugins(self) -> list[registry_pb2.Plugin]:
        return list(self._call(self.registry.ListPlugins, registry_pb2.ListPluginsRequest()).plugins)

    def list_models_page(self, page_size: int = 0, page_token: str = "") -> tuple[list[registry_pb2.Model], str]:
        """One page of models and the token of the next ("" on the last page)."""
        response = self._call(self.registry.ListModels, registry_pb2.ListModelsRequest(page_size=page_size, page_token=page_token))
        return list(response.models), response.next_page_token

    def list_models(self, page_size: int = 0) -> list[registry_pb2.Model]:
        """Every model, following page tokens."""
        models, token = self.list_models_page(page_size)
        while token:
            page, token = self.list_models_page(page_size, token)
            models += page
        return models

    def get_model(self, name: str) -> registry_pb2.GetModelResponse:
        return self._call(self.registry.GetModel, registry_pb2.GetModelRequest(name=name))

    def list_versions(self, model: str) -> list[registry_pb2.ModelVersion]:
        return list(self._call(self.registry.ListVersions, registry_pb2.ListVersionsRequest(model=model)).versions)

    def set_alias(self, model: str, alias: str, version: int) -> registry_pb2.ModelVersion:
        request = registry_pb2.SetAliasRequest(model=model, alias=alias, version=version)
        return self._call(self.registry.SetAlias, request).version

    # -- generation -------------------------------------------------------------------------

    def generate(self, model: str | None = None, *, timeout: float | None = None, **fields: Any) -> RemoteGeneration:
        """Generate and wait; ``fields`` are those of ``build_request`` (``task`` and ``latency_budget_ms`` to route)."""
        response = self._call(self.generation.Generate, build_request(model, **fields), timeout, send_timeout=True)
        return _result(response)

    def stream_generate(
        self, model: str | None = None, *, preview_every: int = 0, timeout: float | None = None, **fields: Any
    ) -> Iterator[StepProgress | RemoteGeneration]:
        """Yield a StepProgress after each sampling step, then the RemoteGeneration.

        Closing the iterator early (``break``) cancels the call; the server stops
        sampling within one step.
        """
        request = generation_pb2.StreamGenerateRequest(request=build_request(model, **fields), preview_every=preview_every)
        timeout = timeout if timeout is not None else self.timeout
        call = self.generation.StreamGenerate(request, timeout=timeout, metadata=_timeout_metadata(timeout))
        try:
            for event in call:
                if event.WhichOneof("event") == "progress":
                    previews = decode_images(event.progress.previews) if event.progress.previews else None
                    yield StepProgress(event.progress.step, event.progress.total, previews)
                else:
                    yield _result(event.result)
        except grpc.RpcError as exc:
            raise error_for(exc.code(), exc.details() or "") from exc
        finally:
            call.cancel()  # no-op when the stream already ended


class _TokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                        grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds ``authorization: Bearer <token>`` to calls that do not carry one."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def _details(self, details: Any) -> Any:
        metadata = list(details.metadata or ())
        token = self.client.token_for(details.method)
        if token and not any(key == "authorization" for key, _ in metadata):
            metadata += auth.bearer_metadata(token)
        return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                            getattr(details, "wait_for_ready", None), getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


def _timeout_metadata(timeout: float | None) -> list[tuple[str, str]] | None:
    """The call's timeout as metadata too: Serve's gRPC proxy does not pass deadlines on to the replicas."""
    return [timeout_metadata(timeout)] if timeout is not None else None


def _result(response: generation_pb2.GenerateResponse) -> RemoteGeneration:
    ref = response.model_version
    return RemoteGeneration(
        samples=decode_images(response.images),
        model=f"{ref.name}:{ref.version}",
        digest=ref.digest,
        seed=response.seed,
        generation_id=response.generation_id,
        duration_s=response.duration_seconds,
        queue_s=response.queue_seconds,
        batch_samples=response.batch_samples,
        response=response,
        sampler=response.sampler,
        steps=response.steps,
        routed_reason=response.routed_reason,
    )
