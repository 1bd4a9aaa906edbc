"""The Ray ingress enforces the same tokens, answers grpc.health.v1, binds only the address given, and survives fuzzing."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hub import auth, errors
from hub.client import Client
from hub.ray.runner import unsettled
from tests.server.fuzz import rss_by_process
from tests.server.harness import IMAGE_MODEL, TinyHub, wait_for
from tests.server.test_fuzz import fuzz_all

FUZZ_REQUESTS = int(os.environ.get("GENHUB_FUZZ_N_RAY", "40"))  # per method; each call crosses several processes
MAX_GROWTH_BYTES = 400 * 1024 * 1024  # every Ray process of the session together, after a warm-up pass


def test_the_ingress_enforces_the_token_scopes(ray_app: str, tiny: TinyHub, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(auth.TOKEN_ENV)
    tokens = auth.read_tokens_file(auth.tokens_path(tiny.home))
    with Client(ray_app, timeout=60, home=tmp_path) as anonymous, pytest.raises(errors.Unauthenticated):
        anonymous.set_alias(IMAGE_MODEL, "ray-auth", 1)
    with Client(ray_app, timeout=60, token="ghk_unknown") as unknown, pytest.raises(errors.Unauthenticated):
        unknown.list_models()
    with Client(ray_app, timeout=120, token=tokens["generate"]) as generate_only:
        with pytest.raises(errors.PermissionDenied, match="needs scope 'admin'"):
            generate_only.set_alias(IMAGE_MODEL, "ray-auth", 1)
        assert generate_only.generate(IMAGE_MODEL, seed=0, steps=2).samples.shape == (1, 1, 8, 8)
        assert [e for e in generate_only.stream_generate(IMAGE_MODEL, seed=0, steps=2)][-1].model.startswith(IMAGE_MODEL)
    with Client(ray_app, timeout=60, token=tokens["admin"]) as admin:
        assert admin.set_alias(IMAGE_MODEL, "ray-auth", 1).ref.version == 1


def test_the_ingress_answers_health_checks_without_a_token(ray_app: str) -> None:
    with grpc.insecure_channel(ray_app) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "hub.v1.GenerationService", "hub.v1.RegistryService"):
            assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=60).status == 1, service
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=60)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
        assert next(watch).status == 1
        watch.cancel()
        assert set(health.List(health_pb2.HealthListRequest(), timeout=60).statuses) >= {"", "hub.v1.GenerationService"}


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_the_grpc_proxy_listens_on_loopback_only(ray_app: str) -> None:
    port = int(ray_app.rsplit(":", 1)[1])
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1 (tcp) or ::ffff:127.0.0.1 (tcp6), in hex
    listening = listening_addresses(port)
    assert listening and listening <= loopback, listening  # not 0.0.0.0 or [::]


def test_every_rpc_of_the_ingress_survives_random_well_typed_requests(ray_app: str, tiny: TinyHub) -> None:
    admin = auth.bearer_metadata(auth.read_tokens_file(auth.tokens_path(tiny.home))[auth.ADMIN])
    # Measure requests, not Serve's own work: a replica that an earlier test killed and Serve is replacing, or a
    # scale-down in progress, would count here as growth (a fresh replica is some 360 MiB).
    wait_for(lambda: not unsettled(), timeout=120, what="every deployment to settle", every=0.5)
    fuzz_all(ray_app, admin, max(8, FUZZ_REQUESTS // 4), seed=11)  # warm-up: replicas load their models
    before = rss_by_process(os.getpid())
    seen = fuzz_all(ray_app, admin, FUZZ_REQUESTS, seed=12)
    after = rss_by_process(os.getpid())
    grown = sum(after.values()) - sum(before.values())
    by_process = sorted(((after.get(p, 0) - before.get(p, 0)) // 2**20, p) for p in {*before, *after})[::-1][:6]
    print({path: dict(counts) for path, counts in seen.items()})
    assert {"hub.v1.GenerationService", "grpc.health.v1.Health"} <= {p.split("/")[1] for p in seen}
    with Client(ray_app, timeout=120) as client:  # still serving
        assert client.generate(IMAGE_MODEL, seed=0, steps=2).samples.shape == (1, 1, 8, 8)
    assert grown < MAX_GROWTH_BYTES, (f"Ray's processes grew by {grown / 2**20:.0f} MiB over "
                                     f"{FUZZ_REQUESTS} requests per method; most (MiB, process): {by_process}")
