"""The Open Inference Protocol through Ray Serve's gRPC ingress (`genhub serve --backend ray`), with tritonclient.

Few tests, each covering much: the session app is slow to start and already deploys every bundled checkpoint.
"""

from __future__ import annotations

from typing import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc

import hub
from tests.server.harness import POINTS_MODEL
from tests.server.oip import hub_v1_pixels, hub_v1_points, inputs, status_of

TIMEOUT = (("genhub-timeout-ms", "120000"),)  # Serve's proxy passes no deadline on: tritonclient sends it as a header


@pytest.fixture(scope="module")
def client(ray_app: str) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(ray_app) as opened:
        yield opened


def test_health_and_metadata_through_the_serve_proxy(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata().name == "genhub" and client.get_server_metadata().version == hub.__version__
    assert client.is_model_ready("ldm-shapes") and client.is_model_ready("ldm-shapes", "1")
    assert not client.is_model_ready("no-such-model")
    metadata = client.get_model_metadata("ldm-shapes")
    assert metadata.platform == "genhub-ldm" and list(metadata.versions) == ["1"]
    assert "prompt" in [t.name for t in metadata.inputs]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [("images", "UINT8", [-1, 32, 32, 3])]


def test_inference_through_the_serve_proxy_equals_hub_v1(client: triton.InferenceServerClient, ray_app: str) -> None:
    headers = dict(TIMEOUT)
    images = client.infer("ldm-shapes", inputs(seed=9, num_samples=2, steps=3, prompt="a red circle"), headers=headers,
                          client_timeout=120).as_numpy("images")
    expected = hub_v1_pixels(ray_app, TIMEOUT, model="ldm-shapes", seed=9, num_samples=2, steps=3, prompt="a red circle")
    np.testing.assert_array_equal(images, expected)
    typed = service_pb2.ModelInferRequest(model_name=POINTS_MODEL, inputs=[
        {"name": "seed", "datatype": "UINT64", "shape": [1], "contents": {"uint64_contents": [4]}},
        {"name": "num_samples", "datatype": "INT32", "shape": [1], "contents": {"int_contents": [3]}},
    ])
    with grpc.insecure_channel(ray_app) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(typed, timeout=120, metadata=TIMEOUT)
    points = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(tuple(response.outputs[0].shape))
    np.testing.assert_array_equal(points, hub_v1_points(ray_app, TIMEOUT, model=POINTS_MODEL, seed=4, num_samples=3))


def test_errors_through_the_serve_proxy(client: triton.InferenceServerClient) -> None:
    bad = triton.InferInput("noise", [1], "FP32").set_data_from_numpy(np.zeros(1, np.float32))
    code, message = status_of(lambda: client.infer("ldm-shapes", [bad], headers=dict(TIMEOUT)))
    assert code == "INVALID_ARGUMENT" and message.startswith("inputs[noise]: unknown input")
    code, _ = status_of(lambda: client.infer("no-such-model", inputs(seed=1), headers=dict(TIMEOUT)))
    assert code == "NOT_FOUND"
    code, message = status_of(lambda: client.get_model_metadata("ldm-shapes", "7"))
    assert code == "NOT_FOUND" and "7" in message
