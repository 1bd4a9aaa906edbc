"""`genhub serve --backend ray`'s generation-log options reach the replicas through their serving settings.

``ModelServer`` (a replica's class) runs here in this process, without Ray: what it does with its settings is
what a Serve replica does with them, on a real registry and a bundled checkpoint.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update

from hub.core import Hub, model_key
from hub.ray.app import HubArgs, ModelServer
from hub.ray.settings import Overrides, ServeSettings, log_assignments
from hub.registry.orm import Generation, utcnow
from hub.server import convert
from hub.v1 import generation_pb2

MODEL = "ddpm-digits"  # a bundled checkpoint: the replica's own hub finds its family through the installed plugins


def generate(replica: ModelServer, hub: Hub) -> generation_pb2.GenerateResponse:
    parsed = convert.parse_generate(generation_pb2.GenerateRequest(model=MODEL, seed=1, steps=2))
    response = asyncio.run(replica.generate(parsed, hub.resolve(MODEL)))
    assert isinstance(response, generation_pb2.GenerateResponse), response
    return response


def test_no_generation_log_and_log_retention_reach_the_replicas(tmp_path: Path) -> None:
    assert log_assignments(None, True) == ()  # neither option given: the settings keep their defaults
    with Hub.open(home=tmp_path) as hub:
        version = hub.resolve(MODEL)
        old, kept = (hub.registry.log_generation(version.id, seed=i, params={}, num_samples=1, duration_s=0.0, status="ok")
                     for i in range(2))
        with hub.registry._session(write=True) as s:
            s.execute(update(Generation).where(Generation.id == old).values(created_at=utcnow() - timedelta(days=40)))
        args = HubArgs(home=str(tmp_path))

        def replica(retention: timedelta | None, log_on: bool) -> ModelServer:
            settings = Overrides.load(None, log_assignments(retention, log_on)).apply(MODEL, ServeSettings())
            return ModelServer(MODEL, args, settings.to_dict())

        quiet = replica(None, False)  # `--no-generation-log`
        try:
            assert generate(quiet, hub).generation_id == 0
        finally:
            quiet.hub.close()
        assert sorted(g.id for g in hub.registry.generations()) == sorted([old, kept])  # nothing logged, nothing pruned

        pruning = replica(timedelta(days=30), True)  # `--log-retention 30d`: its log writer prunes when it starts
        try:
            logged = generate(pruning, hub).generation_id
            assert logged > 0
        finally:
            pruning.hub.close()  # flushes the log
        assert sorted(g.id for g in hub.registry.generations()) == sorted([kept, logged])


def test_a_replica_keeps_max_versions_per_replica_loaded_and_frees_the_evicted(tmp_path: Path) -> None:
    # Two bundled checkpoints stand in for two versions: the replica's LRU is keyed by weights, not by name.
    first_model, second_model = MODEL, "gan-digits"
    with Hub.open(home=tmp_path) as hub:
        first, second = hub.resolve(first_model), hub.resolve(second_model)
        settings = ServeSettings(max_versions_per_replica=1)
        replica = ModelServer(MODEL, HubArgs(home=str(tmp_path)), settings.to_dict())

        async def both() -> tuple[Any, Any]:
            for name, version in ((first_model, first), (second_model, second)):
                parsed = convert.parse_generate(generation_pb2.GenerateRequest(model=name, seed=1))
                response = await replica.generate(parsed, version)
                assert isinstance(response, generation_pb2.GenerateResponse), response
            return model_key(first), model_key(second)

        try:
            old, new = asyncio.run(both())
            assert (old in replica.models, new in replica.models) == (False, True)  # loading the second evicted the first
            assert old not in replica.engine.lanes  # its lane closed
            assert not any(key[:3] == old for key in replica.hub._loaded)  # and the hub's cache let go of its weights
        finally:
            replica.hub.close()
