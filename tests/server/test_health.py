"""grpc.health.v1 with a standard client: Check, Watch (streams the status) and List."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hub.server.app import SERVICE_NAMES, BackgroundServer
from tests.server.harness import TinyHub, running_server

SERVING, NOT_SERVING, UNKNOWN = (health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING,
                                 health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)


def test_watch_streams_the_status_until_the_server_stops(tiny: TinyHub) -> None:
    with running_server(tiny, batch_window_ms=0) as server, grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAMES[0]), timeout=30)
        assert next(watch).status == SERVING
        unknown = stub.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=30)
        assert next(unknown).status == UNKNOWN
        unknown.cancel()
        server.call(server.handle.health.enter_graceful_shutdown())  # what SIGTERM does first
        assert next(watch).status == NOT_SERVING
        watch.cancel()


def test_list_names_every_service_with_its_status(server: BackgroundServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        listed = health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest(), timeout=10)
    assert {name: s.status for name, s in listed.statuses.items()} == {name: SERVING for name in ("", *SERVICE_NAMES)}
