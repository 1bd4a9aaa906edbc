"""The Open Inference Protocol (KServe V2) on `genhub serve`'s port, with tritonclient as the client.

The shared in-process server holds the tiny test models and every bundled checkpoint. Images must equal
hub.v1's for the same seed: one execution path, two wire formats.
"""

from __future__ import annotations

from typing import Any, Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

import hub
from hub.server.app import BackgroundServer
from tests.server.harness import IMAGE_MODEL, TinyHub
from tests.server.harness import wait_for
from tests.server.oip import DATATYPES, connect, hub_v1_pixels, hub_v1_points, inputs, status_of, token_metadata
from tests.server.test_generation import log_mark

SERVICE = "inference.GRPCInferenceService"


@pytest.fixture(scope="module")
def client(server: BackgroundServer, tiny: TinyHub) -> Iterator[triton.InferenceServerClient]:
    with connect(server.address, tiny.home) as opened:
        yield opened


@pytest.fixture(scope="module")
def token(tiny: TinyHub) -> tuple[tuple[str, str], ...]:
    return token_metadata(tiny.home)


class Stub:
    """tritonclient's own generated stub, for requests its high-level API cannot build (typed contents, bad ones)."""

    def __init__(self, channel: grpc.Channel, metadata: tuple[tuple[str, str], ...]) -> None:
        self.stub, self.metadata = service_pb2_grpc.GRPCInferenceServiceStub(channel), metadata

    def ModelInfer(self, request: service_pb2.ModelInferRequest, timeout: float = 60) -> service_pb2.ModelInferResponse:  # noqa: N802
        return self.stub.ModelInfer(request, timeout=timeout, metadata=self.metadata)


@pytest.fixture(scope="module")
def stub(server: BackgroundServer, token: tuple[tuple[str, str], ...]) -> Iterator[Stub]:
    with grpc.insecure_channel(server.address) as channel:
        yield Stub(channel, token)


def test_the_server_is_live_ready_and_names_itself(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert (metadata.name, metadata.version, list(metadata.extensions)) == ("genhub", hub.__version__, [])


def test_health_and_reflection_list_the_service(server: BackgroundServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo
        listed, described = reflect(iter([reflection_pb2.ServerReflectionRequest(list_services=""),
                                          reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)]))
    assert SERVICE in {s.name for s in listed.list_services_response.service}
    assert "hub.v1.GenerationService" in {s.name for s in listed.list_services_response.service}
    assert described.file_descriptor_response.file_descriptor_proto  # clients can build requests from it


def test_model_readiness_follows_the_registry(client: triton.InferenceServerClient) -> None:
    assert client.is_model_ready("stylegan-digits")
    assert client.is_model_ready("stylegan-digits", "1")
    assert client.is_model_ready("stylegan-digits:1")
    assert not client.is_model_ready("no-such-model")
    assert not client.is_model_ready("stylegan-digits", "99")
    code, message = status_of(lambda: client.is_model_ready("stylegan-digits", "latest"))
    assert code == "INVALID_ARGUMENT" and message.startswith("version:")


def tensors(metadata: Any) -> tuple[dict[str, tuple[str, list[int]]], dict[str, tuple[str, list[int]]]]:
    pick = lambda items: {t.name: (t.datatype, list(t.shape)) for t in items}  # noqa: E731
    return pick(metadata.inputs), pick(metadata.outputs)


@pytest.mark.parametrize(("model", "platform", "accepted", "output"), [
    ("stylegan-digits", "genhub-stylegan", ["seed", "num_samples", "truncation"], ("images", "UINT8", [-1, 16, 16, 1])),
    ("ddpm-grid25", "genhub-ddpm", ["seed", "num_samples", "steps", "sampler", "eta"], ("samples", "FP32", [-1, 2])),
    ("ldm-shapes", "genhub-ldm", ["seed", "num_samples", "steps", "sampler", "eta", "guidance_scale", "class_label", "prompt"],
     ("images", "UINT8", [-1, 32, 32, 3])),
])
def test_metadata_lists_what_the_model_accepts_and_returns(client: triton.InferenceServerClient, model: str, platform: str,
                                                          accepted: list[str], output: tuple[str, str, list[int]]) -> None:
    metadata = client.get_model_metadata(model)
    assert (metadata.name, list(metadata.versions), metadata.platform) == (model, ["1"], platform)
    ins, outs = tensors(metadata)
    assert list(ins) == accepted and all(shape == [1] for _, shape in ins.values())
    assert ins["seed"][0] == "UINT64" and ins["num_samples"][0] == "INT32"
    assert outs == {output[0]: (output[1], output[2])}


def test_raw_inputs_give_the_images_hub_v1_gives_for_the_same_seed(client: triton.InferenceServerClient,
                                                                     server: BackgroundServer) -> None:
    result = client.infer("ldm-shapes", inputs(seed=7, num_samples=2, steps=4, prompt="a blue square"), request_id="r1")
    images = result.as_numpy("images")
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
    expected = hub_v1_pixels(server.address, token_metadata(server.handle.hub_thread.hub.home), model="ldm-shapes", seed=7, num_samples=2, steps=4, prompt="a blue square")
    np.testing.assert_array_equal(images, expected)
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("ldm-shapes", "1", "r1")
    assert response.parameters["seed"].int64_param == 7 and response.parameters["steps"].int64_param == 4


def test_a_grayscale_class_conditional_model_through_a_version_number(client: triton.InferenceServerClient,
                                                                       server: BackgroundServer) -> None:
    images = client.infer("ddpm-digits", inputs(seed=3, num_samples=3, steps=3, class_label=5), model_version="1").as_numpy("images")
    expected = hub_v1_pixels(server.address, token_metadata(server.handle.hub_thread.hub.home), model="ddpm-digits:1", seed=3, num_samples=3, steps=3, class_label=5)
    assert images.shape == (3, 16, 16, 1)
    np.testing.assert_array_equal(images, expected)


def typed_request(model: str, **values: Any) -> service_pb2.ModelInferRequest:
    """A request with typed contents (tritonclient's API sends raw ones only)."""
    request = service_pb2.ModelInferRequest(model_name=model)
    fields = {"UINT64": "uint64_contents", "INT32": "int_contents", "FP32": "fp32_contents", "BYTES": "bytes_contents"}
    for name, value in values.items():
        datatype = DATATYPES[name]
        tensor = request.inputs.add(name=name, datatype=datatype, shape=[1])
        getattr(tensor.contents, fields[datatype]).append(value.encode() if datatype == "BYTES" else value)
    return request


def test_typed_inputs_give_the_same_samples_as_raw_ones(client: triton.InferenceServerClient, stub: Stub,
                                                        server: BackgroundServer) -> None:
    typed = stub.ModelInfer(typed_request("ddpm-grid25", seed=5, num_samples=4, steps=6, sampler="ddim", eta=0.5), timeout=60)
    points = np.frombuffer(typed.raw_output_contents[0], dtype="<f4").reshape(tuple(typed.outputs[0].shape))
    raw = client.infer("ddpm-grid25", inputs(seed=5, num_samples=4, steps=6, sampler="ddim", eta=0.5)).as_numpy("samples")
    assert typed.outputs[0].datatype == "FP32" and points.shape == (4, 2)
    np.testing.assert_array_equal(points, raw)
    np.testing.assert_array_equal(points, hub_v1_points(server.address, stub.metadata, model="ddpm-grid25", seed=5, num_samples=4,
                                                        steps=6, sampler="ddim", eta=0.5))


def test_a_request_is_logged_like_hub_v1s(client: triton.InferenceServerClient, tiny: TinyHub) -> None:
    response = client.infer("stylegan-digits", inputs(seed=11, num_samples=2, truncation=0.7)).get_response()
    tiny.hub.generation_log.flush()  # the server logs through the session hub's background writer
    logged = {g.id: g for g in tiny.hub.registry.generations(limit=50)}[response.parameters["generation_id"].int64_param]
    assert (logged.status, logged.seed, logged.num_samples, logged.ref) == ("ok", 11, 2, "stylegan-digits:1")
    assert logged.params["truncation"] == pytest.approx(0.7)


def mixed(request: service_pb2.ModelInferRequest) -> service_pb2.ModelInferRequest:
    """Raw contents for every input, while the first (typed) one also keeps its contents."""
    request.inputs.add(name="num_samples", datatype="INT32", shape=[1])
    request.raw_input_contents.extend([np.array([1], dtype="<u8").tobytes(), np.array([2], dtype="<i4").tobytes()])
    return request


def raw(model: str, *tensors: tuple[str, str, list[int], bytes], version: str = "") -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    for name, datatype, shape, data in tensors:
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(data)
    return request


SEED = ("seed", "UINT64", [1], np.array([1], dtype="<u8").tobytes())
ERRORS = [  # (request, status code, the message starts with)
    (mixed(typed_request("stylegan-digits", seed=1)), "INVALID_ARGUMENT", "seed: sets contents"),
    (raw("stylegan-digits", SEED, ("noise", "FP32", [1], b"\0" * 4)), "INVALID_ARGUMENT", "inputs[noise]: unknown input"),
    (raw("stylegan-digits", ("seed", "INT64", [1], b"\0" * 8)), "INVALID_ARGUMENT", "seed: must have datatype UINT64"),
    (raw("stylegan-digits", ("seed", "UINT64", [2], b"\0" * 16)), "INVALID_ARGUMENT", "seed: must have shape [1]"),
    (raw("stylegan-digits", ("seed", "UINT64", [1], b"\0" * 4)), "INVALID_ARGUMENT", "seed: raw content of one UINT64"),
    (raw("stylegan-digits", SEED, SEED), "INVALID_ARGUMENT", "seed: is given twice"),
    (raw("ldm-shapes", ("prompt", "BYTES", [1], b"\x05\0\0\0abc")), "INVALID_ARGUMENT", "prompt: raw BYTES content"),
    (raw("ldm-shapes", ("prompt", "BYTES", [1], b"\x02\0\0\0\xff\xfe")), "INVALID_ARGUMENT", "prompt: must be UTF-8"),
    (raw("stylegan-digits", ("num_samples", "INT32", [1], np.array([65537], "<i4").tobytes())), "INVALID_ARGUMENT",
     "num_samples: must be between 1 and 65536"),
    (raw("stylegan-digits", ("num_samples", "INT32", [1], np.array([-1], "<i4").tobytes())), "INVALID_ARGUMENT",
     "num_samples: must be >= 0"),
    (raw("stylegan-digits", ("seed", "UINT64", [1], np.array([2**64 - 1], "<u8").tobytes())), "INVALID_ARGUMENT",
     "seed: must be between 0 and 2^63-1"),
    (typed_request("ddpm-grid25", prompt="a square"), "INVALID_ARGUMENT", "prompt: this model is not text-conditional"),
    (typed_request("ldm-shapes", class_label=1, prompt="a square"), "INVALID_ARGUMENT", "class_label, prompt:"),
    (service_pb2.ModelInferRequest(model_name="stylegan-digits", inputs=[{"name": "seed", "datatype": "UINT64", "shape": [1]}]),
     "INVALID_ARGUMENT", "seed: has no data"),
    (service_pb2.ModelInferRequest(model_name="stylegan-digits", raw_input_contents=[b"\0" * 8]),
     "INVALID_ARGUMENT", "raw_input_contents: has 1 entries for 0 inputs"),
    (service_pb2.ModelInferRequest(model_name="stylegan-digits", outputs=[{"name": "logits"}]), "INVALID_ARGUMENT",
     "outputs[logits]: unknown output"),
    (service_pb2.ModelInferRequest(model_name="stylegan-digits", outputs=[{"name": "samples"}]), "INVALID_ARGUMENT",
     "outputs[samples]: model stylegan-digits returns 'images'"),
    (raw("no-such-model", SEED), "NOT_FOUND", ""),
    (raw("stylegan-digits", SEED, version="v1"), "INVALID_ARGUMENT", "model_version: must be a version number"),
    (raw("stylegan-digits@latest", SEED, version="1"), "INVALID_ARGUMENT", "model_version: give the version in model_name"),
    (raw("", SEED), "INVALID_ARGUMENT", "model_name: is required"),
    # hub.v1's edge limits hold for the same values here
    (raw("m" * 100_000, SEED), "INVALID_ARGUMENT", "model_name: must be at most"),
    (typed_request("ldm-shapes", sampler="s" * 100_000), "INVALID_ARGUMENT", "sampler:"),
    (typed_request("ldm-shapes", sampler="dd im\n"), "INVALID_ARGUMENT", "sampler:"),
    (typed_request("ldm-shapes", prompt="p" * 100_000), "INVALID_ARGUMENT", "prompt: must be at most"),
]


@pytest.mark.parametrize(("request_", "code", "start"), ERRORS, ids=[e[2].split(":")[0] + f"-{i}" for i, e in enumerate(ERRORS)])
def test_bad_requests_are_refused_with_the_input_named(stub: Stub, request_: Any, code: str, start: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request_, timeout=60)
    assert caught.value.code().name == code, caught.value.details()
    assert caught.value.details().startswith(start), caught.value.details()


def test_a_deadline_stops_the_request_as_on_hub_v1(client: triton.InferenceServerClient, tiny: TinyHub) -> None:
    # The model loaded first (a tenth of a second here, several times that on a loaded machine): the 0.5 s must run
    # out while sampling. One that runs out before the engine admits the request ends it unlogged.
    client.infer("ddpm-digits", inputs(seed=1, num_samples=1, steps=1, sampler="ddpm"))
    before = log_mark(tiny)
    code, _ = status_of(lambda: client.infer("ddpm-digits", inputs(seed=1, num_samples=8, steps=1000, sampler="ddpm"),
                                              client_timeout=0.5))
    assert code == "DEADLINE_EXCEEDED"
    stopped = wait_for(lambda: [g for g in tiny.hub.registry.generations(limit=20) if g.created_at > before and g.status == "deadline"],
                       timeout=60, what="the stopped request in the generation log")
    assert stopped[0].ref == "ddpm-digits:1"


def test_liveness_is_open_and_the_rest_needs_a_generate_token(server: BackgroundServer) -> None:
    """The security table covers the open protocol: probes without credentials, inference with a token."""
    with connect(server.address) as anonymous:
        assert anonymous.is_server_live() and anonymous.is_server_ready()
        for call in (lambda: anonymous.infer("stylegan-digits", inputs(seed=1)), lambda: anonymous.get_model_metadata("stylegan-digits")):
            code, message = status_of(call)
            assert code == "UNAUTHENTICATED" and "authorization: Bearer" in message


def test_request_parameters_reach_the_family_and_a_cancelled_infer_stops_sampling(client: triton.InferenceServerClient,
                                                                                 tiny: TinyHub) -> None:
    model = tiny.model(IMAGE_MODEL)
    before = log_mark(tiny)
    started = model.steps_taken
    outcome: list[Any] = []
    call = client.async_infer(IMAGE_MODEL, inputs(seed=1, steps=500), lambda result, error: outcome.append(error),
                              parameters={"step_sleep_s": 0.02})  # the tiny family's slow-down param
    wait_for(lambda: model.steps_taken > started + 3, timeout=60, what="sampling to start")
    call.cancel()
    logged = wait_for(lambda: [g for g in tiny.hub.registry.generations(limit=20) if g.created_at > before and g.status == "cancelled"],
                      timeout=60, what="the cancelled request in the generation log")
    assert logged[0].params["params"] == {"step_sleep_s": 0.02}
    stopped_at = model.steps_taken
    assert stopped_at - started < 500  # it stopped within a step or two of the cancellation, not at the end
    wait_for(lambda: outcome, what="tritonclient's callback")
    assert "CANCELLED" in str(outcome[0].status())


def test_the_timeout_parameter_is_a_deadline(client: triton.InferenceServerClient) -> None:
    code, message = status_of(lambda: client.infer(IMAGE_MODEL, inputs(seed=2, steps=500), parameters={"step_sleep_s": 0.02},
                                                   timeout=300_000))  # microseconds, as in Triton
    assert code == "DEADLINE_EXCEEDED" and "deadline" in message


def test_every_bundled_model_has_metadata_a_triton_client_can_read(client: triton.InferenceServerClient, tiny: TinyHub) -> None:
    """Each shipped checkpoint: its platform, inputs of shape [1], and one output whose dims match what it samples."""
    bundled = sorted(tiny.hub.parts.pretrained.values(), key=lambda p: p.name)
    assert len(bundled) >= 12
    for pretrained in bundled:
        metadata = client.get_model_metadata(pretrained.name)
        assert metadata.platform == f"genhub-{pretrained.family}", pretrained.name
        ins, outs = tensors(metadata)
        assert {"seed", "num_samples"} <= set(ins) and all(shape == [1] for _, shape in ins.values()), pretrained.name
        ((output, (datatype, dims)),) = outs.items()
        if output == "samples":  # 2D points: [N, D]
            assert (datatype, dims[0], len(dims)) == ("FP32", -1, 2), pretrained.name
        else:  # images: [N, H, W, C] with C = 1 or 3
            assert (output, datatype, dims[0], len(dims)) == ("images", "UINT8", -1, 4) and dims[3] in (1, 3), pretrained.name
        assert ("prompt" in ins) == (pretrained.family == "ldm"), pretrained.name
