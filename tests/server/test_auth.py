"""Tokens on by default: scopes, the method table, tokens.json, revocation and expiry, on a real server."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sqlalchemy import create_engine, text

from hub import auth, errors
from hub.client import Client
from hub.server.app import BackgroundServer
from hub.server.auth import METHOD_SCOPES, method_scope
from tests.server.harness import IMAGE_MODEL, TinyHub, running_server, wait_for


@pytest.fixture
def no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(auth.TOKEN_ENV, raising=False)


@pytest.fixture
def tokens(tiny: TinyHub, server: BackgroundServer) -> dict[str, str]:
    """What the first start wrote into the hub's home."""
    return json.loads((tiny.home / "tokens.json").read_text())


def test_first_start_writes_one_token_of_each_scope_readable_by_its_owner_only(tiny: TinyHub, tokens: dict[str, str]) -> None:
    path = tiny.home / "tokens.json"
    assert set(tokens) == {"admin", "generate"} and tokens["admin"] != tokens["generate"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = {r.name: r.scope for r in tiny.hub.registry.tokens.list()}
    assert {"initial-admin": "admin", "initial-generate": "generate"}.items() <= stored.items()
    if tiny.db_url.startswith("sqlite"):
        raw = b"".join(f.read_bytes() for f in tiny.home.glob("r.db*"))  # the registry (and its WAL) holds hashes only
    else:  # PostgreSQL: every column of every token row
        engine = create_engine(tiny.db_url)
        with engine.connect() as conn:
            raw = repr(conn.execute(text("SELECT * FROM api_tokens")).all()).encode()
        engine.dispose()
    assert tokens["admin"].encode() not in raw and auth.token_hash(tokens["admin"]).encode() in raw


def test_a_second_start_keeps_the_tokens(tiny: TinyHub, tokens: dict[str, str]) -> None:
    with running_server(tiny, batch_window_ms=0):
        assert json.loads((tiny.home / "tokens.json").read_text()) == tokens


def test_set_alias_needs_the_admin_scope(server: BackgroundServer, tokens: dict[str, str], tmp_path: Path, no_env_token: None) -> None:
    with Client(server.address, timeout=30, home=tmp_path) as anonymous:  # no tokens.json there
        with pytest.raises(errors.Unauthenticated, match="authorization: Bearer"):
            anonymous.set_alias(IMAGE_MODEL, "auth-test", 1)
    with Client(server.address, timeout=30, token=tokens["generate"]) as generate_only:
        with pytest.raises(errors.PermissionDenied, match="needs scope 'admin'"):
            generate_only.set_alias(IMAGE_MODEL, "auth-test", 1)
    with Client(server.address, timeout=30, token=tokens["admin"]) as admin:
        assert admin.set_alias(IMAGE_MODEL, "auth-test", 1).ref.version == 1


@pytest.mark.parametrize("scope", ["generate", "admin"])
def test_generation_and_reads_work_with_either_token(server: BackgroundServer, tokens: dict[str, str], scope: str) -> None:
    with Client(server.address, timeout=30, token=tokens[scope]) as client:
        assert client.generate(IMAGE_MODEL, num_samples=1, seed=0, steps=2).samples.shape == (1, 1, 8, 8)
        assert [e for e in client.stream_generate(IMAGE_MODEL, seed=0, steps=2)][-1].model.startswith(IMAGE_MODEL)
        assert IMAGE_MODEL in [m.name for m in client.list_models()]


def test_the_client_reads_tokens_json_and_sends_the_narrowest_token(server: BackgroundServer, tokens: dict[str, str],
                                                                     no_env_token: None) -> None:
    with server.client(timeout=30) as client:
        assert client.token_for("/hub.v1.GenerationService/Generate") == tokens["generate"]
        assert client.token_for("/hub.v1.RegistryService/SetAlias") == tokens["admin"]
        assert client.set_alias(IMAGE_MODEL, "auth-test-2", 1).ref.version == 1


@pytest.mark.parametrize("header", ["Bearer ghk_not-a-real-token", "Basic dXNlcjpwYXNz", "Bearer " + "x" * 5000, "Bearer "])
def test_unknown_or_malformed_tokens_are_unauthenticated(server: BackgroundServer, header: str) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)  # open
        assert stub.Check(health_pb2.HealthCheckRequest(), metadata=[("authorization", header)], timeout=10).status == 1
        from hub.v1 import registry_pb2, registry_pb2_grpc

        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            registry.ListModels(registry_pb2.ListModelsRequest(), metadata=[("authorization", header)], timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_revoked_and_expired_tokens_stop_working(tiny: TinyHub, server: BackgroundServer) -> None:
    store = tiny.hub.registry.tokens
    _, revoked = store.create("generate", name="to-revoke")
    _, expired = store.create("generate", name="already-expired", expires=timedelta(seconds=-1))
    with Client(server.address, timeout=30, token=revoked) as client:

        def accepted() -> bool:
            try:
                return bool(client.list_plugins())
            except errors.Unauthenticated:
                return False

        wait_for(accepted, timeout=10, what="a new token to be accepted (the server rereads tokens every second)")
        store.revoke("to-revoke")
        wait_for(lambda: not accepted(), timeout=10, what="the revoked token to be refused")
    with Client(server.address, timeout=30, token=expired) as client, pytest.raises(errors.Unauthenticated):
        client.list_plugins()
    store.revoke("already-expired")


def test_health_and_reflection_stay_open(server: BackgroundServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == 1
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answer = next(iter(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)))
    assert "hub.v1.RegistryService" in {s.name for s in answer.list_services_response.service}


def test_no_auth_serves_without_tokens(tiny: TinyHub, tmp_path: Path, no_env_token: None) -> None:
    with running_server(tiny, batch_window_ms=0, auth_enabled=False) as open_server:
        with Client(open_server.address, timeout=30, home=tmp_path) as client:
            assert client.set_alias(IMAGE_MODEL, "auth-test-3", 1).ref.version == 1


def test_every_served_method_has_a_scope_and_unknown_methods_are_denied(server: BackgroundServer) -> None:
    from tests.server.reflect import served_methods

    for method in served_methods(server.address):
        assert method in METHOD_SCOPES, method
    with pytest.raises(errors.PermissionDenied, match="not in the server's method table"):
        method_scope("/hub.v1.RegistryService/DeleteEverything")
    assert method_scope("/grpc.health.v1.Health/Check") is None
    assert method_scope("/grpc.health.v1.Health/Check", health_needs_token=True) == "generate"
