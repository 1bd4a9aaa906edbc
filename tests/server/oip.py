"""Helpers for the Open Inference Protocol tests (local server and Ray ingress): tritonclient is the client."""

from __future__ import annotations

import io
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc as triton
from PIL import Image
from tritonclient._plugin import InferenceServerClientPlugin

from hub import auth
from hub.v1 import generation_pb2, generation_pb2_grpc

DTYPES = {"UINT64": np.uint64, "INT32": np.int32, "FP32": np.float32, "BYTES": object}
DATATYPES = {"seed": "UINT64", "num_samples": "INT32", "steps": "INT32", "sampler": "BYTES", "eta": "FP32",
             "guidance_scale": "FP32", "truncation": "FP32", "class_label": "INT32", "prompt": "BYTES"}


class Bearer(InferenceServerClientPlugin):
    """Sends ``authorization: Bearer <token>`` with every call, as any tritonclient user can (a plugin or headers=)."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    def __call__(self, request: Any) -> None:
        if self.token:
            request.headers["authorization"] = f"Bearer {self.token}"


def connect(address: str, home: Any = None) -> triton.InferenceServerClient:
    """A tritonclient client that sends the generate token of the server whose genhub home is ``home``."""
    client = triton.InferenceServerClient(address)
    client.register_plugin(Bearer(auth.client_token(auth.GENERATE, home) if home is not None else None))
    return client


def token_metadata(home: Any) -> tuple[tuple[str, str], ...]:
    """The generate token of the server with genhub home ``home``, as invocation metadata (for raw stubs)."""
    return tuple(auth.bearer_metadata(auth.client_token(auth.GENERATE, home)))


def inputs(**values: Any) -> list[triton.InferInput]:
    """One [1]-shaped tritonclient input per keyword, with the protocol mapping's datatype (raw contents)."""
    made = []
    for name, value in values.items():
        datatype = DATATYPES[name]
        data = np.array([value.encode() if datatype == "BYTES" else value], dtype=DTYPES[datatype])
        made.append(triton.InferInput(name, [1], datatype).set_data_from_numpy(data))
    return made


def hub_v1_pixels(address: str, metadata: tuple[tuple[str, str], ...] = (), **request: Any) -> np.ndarray:
    """hub.v1 Generate's PNGs, decoded: [N, H, W, C] uint8."""
    with grpc.insecure_channel(address) as channel:
        response = generation_pb2_grpc.GenerationServiceStub(channel).Generate(
            generation_pb2.GenerateRequest(**request), timeout=120, metadata=metadata)
    pixels = [np.array(Image.open(io.BytesIO(image.png))) for image in response.images]
    return np.stack([p[..., None] if p.ndim == 2 else p for p in pixels])


def hub_v1_points(address: str, metadata: tuple[tuple[str, str], ...] = (), **request: Any) -> np.ndarray:
    """hub.v1 Generate's raw tensors of a 2D-point model: [N, D] float32."""
    with grpc.insecure_channel(address) as channel:
        response = generation_pb2_grpc.GenerationServiceStub(channel).Generate(
            generation_pb2.GenerateRequest(**request), timeout=120, metadata=metadata)
    return np.stack([np.frombuffer(image.tensor.data, dtype="<f4") for image in response.images])


def status_of(call: Any) -> tuple[str, str]:
    """(status code name, message) of a tritonclient call that must fail."""
    try:
        call()
    except triton.InferenceServerException as exc:
        return str(exc.status()).removeprefix("StatusCode."), exc.message() or ""
    raise AssertionError("the call succeeded; it should have failed")
