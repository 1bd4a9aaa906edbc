"""RegistryService against a real in-process server, on SQLite and on PostgreSQL (``tiny_db``)."""

from __future__ import annotations

import json
from typing import Iterator

import grpc
import pytest

from hub import errors
from hub.client import Client
from hub.registry import Registry
from hub.server.app import BackgroundServer
from hub.v1 import registry_pb2, registry_pb2_grpc
from tests.server.harness import IMAGE_MODEL, POINTS_MODEL, TinyHub, register_trained, running_server, wait_for


@pytest.fixture
def client(db_server: BackgroundServer) -> Iterator[Client]:
    with db_server.client(timeout=30) as opened:
        yield opened


def test_list_plugins_shows_status_and_contributions(client: Client) -> None:
    plugins = {p.name: p for p in client.list_plugins()}
    tiny = plugins["tinyfamily"]
    assert tiny.status == registry_pb2.PLUGIN_STATUS_LOADED and list(tiny.model_families) == ["tiny"]
    assert "digits" in plugins["hub.builtin.datasets"].datasets


def test_list_models_pages_through_every_model(client: Client) -> None:
    names = [m.name for m in client.list_models()]
    assert names == sorted(names) and {IMAGE_MODEL, POINTS_MODEL} <= set(names)
    paged, token = [], ""
    while True:
        page, token = client.list_models_page(page_size=1, page_token=token)
        assert len(page) == 1
        paged += [m.name for m in page]
        if not token:
            break
    assert paged == names
    model = next(m for m in client.list_models() if m.name == IMAGE_MODEL)
    assert model.family == "tiny" and model.plugin == "tinyfamily" and model.latest_version >= 1
    assert model.aliases["latest"] == model.latest_version and model.create_time.seconds > 0


def test_page_size_past_the_limit_is_invalid(client: Client) -> None:
    with pytest.raises(errors.InvalidArgument, match="page_size: must be between 1 and 1000"):
        client.list_models_page(page_size=1001)


def test_get_model_has_versions_metrics_card_and_training(client: Client) -> None:
    response = client.get_model(IMAGE_MODEL)
    assert response.model.name == IMAGE_MODEL
    first = response.versions[0]
    assert first.ref.version == 1 and first.ref.family == "tiny" and len(first.ref.digest) == 64
    assert first.card.startswith("# tiny-digits") and first.dataset == "digits"
    assert [(m.name, m.value, m.data) for m in first.metrics] == [("fid", 123.0, "digits:test")]
    assert first.training_runs[0].steps == 3 and first.training_runs[0].HasField("final_loss")
    assert json.loads(first.config_json)["size"] == 8


def test_unknown_models_are_not_found(client: Client) -> None:
    with pytest.raises(errors.NotFound, match="nope"):
        client.get_model("nope")
    with pytest.raises(errors.NotFound, match="nope"):
        client.list_versions("nope")


def test_missing_required_fields_are_invalid(client: Client) -> None:
    stub = registry_pb2_grpc.RegistryServiceStub(client.channel)
    with pytest.raises(grpc.RpcError) as raised:
        stub.SetAlias(registry_pb2.SetAliasRequest(model=IMAGE_MODEL, alias="prod"), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and raised.value.details().startswith("version:")
    with pytest.raises(errors.InvalidArgument, match="name: is required"):
        client.get_model("")


def test_set_alias_moves_what_generation_resolves(tiny_db: TinyHub, client: Client) -> None:
    register_trained(tiny_db.hub, POINTS_MODEL, "gmm-ring8")  # version 2
    versions = client.list_versions(POINTS_MODEL)
    assert [v.ref.version for v in versions] == [1, 2] and "latest" in versions[1].aliases
    moved = client.set_alias(POINTS_MODEL, "prod", 1)
    assert moved.ref.version == 1 and "prod" in moved.aliases
    result = client.generate(f"{POINTS_MODEL}@prod", seed=0, steps=2)
    assert result.model == f"{POINTS_MODEL}:1" and result.digest == versions[0].ref.digest
    assert client.generate(POINTS_MODEL, seed=0, steps=2).model == f"{POINTS_MODEL}:2"
    with pytest.raises(errors.NotFound):
        client.set_alias(POINTS_MODEL, "prod", 9)
    with pytest.raises(errors.InvalidArgument, match="alias"):
        client.set_alias(POINTS_MODEL, "Not An Alias", 1)


def test_an_alias_moved_by_another_process_reaches_the_server(tiny_db: TinyHub) -> None:
    name = "tiny-watched"
    for _ in range(2):
        register_trained(tiny_db.hub, name, "gmm-ring8")
    tiny_db.hub.registry.set_alias(name, "prod", 1)
    with running_server(tiny_db, alias_ttl_s=3600) as server, server.client(timeout=60) as client:
        assert client.generate(f"{name}@prod", seed=0, steps=1).model == f"{name}:1"  # resolved, and cached
        with Registry(tiny_db.db_url) as other:  # another process's connection moves the alias
            other.set_alias(name, "prod", 2)
        if tiny_db.db_url.startswith("postgresql"):  # pushed at commit (LISTEN/NOTIFY): the cache is dropped
            wait_for(lambda: client.generate(f"{name}@prod", seed=0, steps=1).model == f"{name}:2", timeout=30,
                     what="the server to see the alias move")
        else:  # SQLite cannot push: the server keeps its resolution until the cache's TTL
            assert client.generate(f"{name}@prod", seed=0, steps=1).model == f"{name}:1"
