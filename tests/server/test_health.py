"""grpc.health.v1 with a standard client: Check, Watch (streams the status) and List; the open inference
protocol's ServerReady and ModelReady (tritonclient) agree with it."""

from __future__ import annotations

import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hub.server.app import SERVICE_NAMES, BackgroundServer
from tests.server.harness import IMAGE_MODEL, TinyHub, running_server, wait_for
from tests.server.oip import connect

SERVING, NOT_SERVING, UNKNOWN = (health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING,
                                 health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)


def test_watch_streams_the_status_until_the_server_stops(tiny: TinyHub) -> None:
    with running_server(tiny) as server, grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAMES[0]), timeout=30)
        assert next(watch).status == SERVING
        unknown = stub.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=30)
        assert next(unknown).status == UNKNOWN
        unknown.cancel()
        with connect(server.address, tiny.home) as oip:  # the open protocol's readiness agrees, before and after
            assert oip.is_server_ready() and oip.is_model_ready(IMAGE_MODEL)
            server.call(server.handle.health.enter_graceful_shutdown())  # what SIGTERM does first
            assert next(watch).status == NOT_SERVING
            assert oip.is_server_live() and not oip.is_server_ready() and not oip.is_model_ready(IMAGE_MODEL)
        watch.cancel()


def test_list_names_every_service_with_its_status(server: BackgroundServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        listed = health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest(), timeout=10)
    assert {name: s.status for name, s in listed.statuses.items()} == {name: SERVING for name in ("", *SERVICE_NAMES)}


def test_not_serving_until_the_bundled_models_are_synced(tiny: TinyHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """`genhub serve` listens first and syncs after (start(sync=True)); health says when it is done."""
    synced = threading.Event()
    release = threading.Event()
    real_sync = tiny.hub.sync

    def slow_sync() -> None:  # the real sync, held until the test has seen NOT_SERVING
        release.wait(30)
        real_sync()
        synced.set()

    monkeypatch.setattr(tiny.hub, "sync", slow_sync)
    # no tokens: a token check would wait for the hub thread, which the sync holds
    with running_server(tiny, sync=True, auth_enabled=False) as server, grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        assert stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == NOT_SERVING
        with connect(server.address) as oip:  # the open protocol: live, not ready, until the sync ends
            assert oip.is_server_live() and not oip.is_server_ready() and not oip.is_model_ready(IMAGE_MODEL)
            release.set()
            wait_for(lambda: stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == SERVING,
                     timeout=60, what="SERVING after the sync")
            assert oip.is_server_ready() and oip.is_model_ready(IMAGE_MODEL)
        assert synced.is_set()
        statuses = stub.List(health_pb2.HealthListRequest(), timeout=10).statuses
        assert {name: s.status for name, s in statuses.items()} == {name: SERVING for name in ("", *SERVICE_NAMES)}
