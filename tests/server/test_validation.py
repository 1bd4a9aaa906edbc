"""Edge validation: every string field has a limit checked before queueing, honest codes, short errors without paths."""

from __future__ import annotations

import base64
from typing import Any, Callable

import grpc
import pytest

from hub import errors
from hub.client import build_request
from hub.server.app import BackgroundServer
from hub.server.status import status_for
from hub.v1 import generation_pb2, generation_pb2_grpc, registry_pb2, registry_pb2_grpc
from tests.server.harness import IMAGE_MODEL, TinyHub, running_server

NESTED = base64.urlsafe_b64encode(b"[" * 100_000).decode()  # json.loads recursion; under the receive limit


@pytest.fixture
def stubs(server: BackgroundServer) -> Any:
    with server.client(timeout=30) as client:
        yield registry_pb2_grpc.RegistryServiceStub(client.channel), generation_pb2_grpc.GenerationServiceStub(client.channel)


CASES: list[tuple[str, str, Callable[[Any, Any], Any]]] = [
    ("sampler", "sampler", lambda r, g: g.Generate(build_request(IMAGE_MODEL, sampler="s" * 100_000), timeout=30)),
    ("sampler, odd characters", "sampler", lambda r, g: g.Generate(build_request(IMAGE_MODEL, sampler="dd im\n"), timeout=30)),
    ("model", "model", lambda r, g: g.Generate(build_request("m" * 100_000), timeout=30)),
    ("stream model", "model", lambda r, g: list(g.StreamGenerate(
        generation_pb2.StreamGenerateRequest(request=build_request("m" * 100_000)), timeout=30))),
    ("prompt", "prompt", lambda r, g: g.Generate(build_request(IMAGE_MODEL, prompt="p" * 100_000), timeout=30)),
    ("param key", "params", lambda r, g: g.Generate(build_request(IMAGE_MODEL, params={"k" * 100_000: 1}), timeout=30)),
    ("param value", "params[k]", lambda r, g: g.Generate(build_request(IMAGE_MODEL, params={"k": "v" * 100_000}), timeout=30)),
    ("page token", "page_token", lambda r, g: r.ListModels(registry_pb2.ListModelsRequest(page_token="t" * 100_000), timeout=30)),
    ("nested page token", "page_token", lambda r, g: r.ListModels(registry_pb2.ListModelsRequest(page_token=NESTED[:1000]), timeout=30)),
    ("GetModel name", "name", lambda r, g: r.GetModel(registry_pb2.GetModelRequest(name="n" * 100_000), timeout=30)),
    ("ListVersions model", "model", lambda r, g: r.ListVersions(registry_pb2.ListVersionsRequest(model="n" * 100_000), timeout=30)),
    ("SetAlias alias", "alias", lambda r, g: r.SetAlias(
        registry_pb2.SetAliasRequest(model=IMAGE_MODEL, alias="a" * 100_000, version=1), timeout=30)),
]


@pytest.mark.parametrize(("what", "field", "call"), CASES, ids=[c[0] for c in CASES])
def test_oversized_or_malformed_strings_are_invalid_argument_naming_the_field(stubs: Any, what: str, field: str,
                                                                           call: Callable[[Any, Any], Any]) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call(*stubs)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    details = caught.value.details()
    assert details.startswith(f"{field}:") and len(details) < 400, details


def test_nested_brackets_decode_as_an_invalid_token_not_a_crash() -> None:
    from hub.registry.convert import decode_token

    with pytest.raises(errors.InvalidArgument, match="page_token"):
        decode_token(base64.urlsafe_b64encode(b"[" * 700).decode().rstrip("="))


def test_requests_over_the_receive_limit_are_refused(tiny: TinyHub) -> None:
    with running_server(tiny, batch_window_ms=0, max_receive_bytes=2048) as small, small.client(timeout=30) as client:
        stub = generation_pb2_grpc.GenerationServiceStub(client.channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Generate(build_request(IMAGE_MODEL, params={"k": "v" * 1000, "l": "w" * 1000, "m": "x" * 1000}), timeout=30)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert client.generate(IMAGE_MODEL, seed=0, steps=2).samples.shape[0] == 1  # small requests still pass


def test_the_default_receive_limit_is_4_mib(server: BackgroundServer) -> None:
    with server.client(timeout=30) as client:
        stub = generation_pb2_grpc.GenerationServiceStub(client.channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Generate(build_request(IMAGE_MODEL, sampler="s" * (4 * 1024 * 1024 + 1)), timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_error_text_names_no_server_paths_and_is_cut() -> None:
    code, message = status_for(errors.ArtifactCorrupt("weights at /srv/genhub/artifacts/sha256/ab/abcd do not match; "
                                                      "see sqlite:////srv/genhub/registry.db"))
    assert code == grpc.StatusCode.DATA_LOSS and "/srv" not in message and message.count("<path>") == 2
    _, long = status_for(errors.NotFound("x" * 100_000))
    assert len(long) <= errors.MAX_ERROR_CHARS and "100000 characters" in long
    _, method = status_for(errors.PermissionDenied("/hub.v1.RegistryService/SetAlias needs scope 'admin'"))
    assert method.startswith("/hub.v1.RegistryService/SetAlias")
