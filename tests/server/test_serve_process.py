"""A real `genhub serve` process: Python client, CLI, health, reflection; SIGTERM drain.

The tiny family reaches the subprocess through an entry point, as a third-party
plugin would; the subprocess shares the session's SQLite registry. The session
fixture's teardown checks that SIGTERM stops the process with exit status 0.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
from pathlib import Path
import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from hub import errors
from hub.client import Client, RemoteGeneration, StepProgress
from hub.server.app import ServerHandle, serve
from hub.auth import read_tokens_file, tokens_path
from hub.server.commands import generate_remote
from tests.server.harness import IMAGE_MODEL, ServeProcess, TinyHub, wait_for

SERVICES = ["hub.v1.GenerationService", "hub.v1.RegistryService"]


@pytest.fixture
def serving(serve_process: ServeProcess) -> ServeProcess:
    return serve_process


def test_python_client_lists_and_generates(tiny: TinyHub, serving: ServeProcess) -> None:
    with Client(serving.address, timeout=60, home=tiny.home) as client:
        assert IMAGE_MODEL in [m.name for m in client.list_models()]
        assert "tinyfamily" in [p.name for p in client.list_plugins()]
        result = client.generate(IMAGE_MODEL, num_samples=2, seed=3, steps=3)
        assert result.samples.shape == (2, 1, 8, 8)
        events = list(client.stream_generate(IMAGE_MODEL, num_samples=1, seed=3, steps=3))
    steps = [e.step for e in events[:-1] if isinstance(e, StepProgress)]
    assert steps == sorted(set(steps)) and steps[-1] == 3  # a slower reader gets the newest progress (coalesced)
    assert isinstance(events[-1], RemoteGeneration)
    # the server logged in the shared registry (its background writer flushes within 200 ms)
    logged = wait_for(lambda: {g.id: g for g in tiny.hub.registry.generations(limit=20)}.get(result.generation_id),
                      what=f"generation {result.generation_id} in the log")
    assert logged.status == "ok" and logged.seed == 3


def test_health_is_serving_for_each_service(serving: ServeProcess) -> None:
    with grpc.insecure_channel(serving.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ["", *SERVICES]:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.SERVING, service


def test_reflection_describes_the_services_without_the_protos(serving: ServeProcess) -> None:
    with grpc.insecure_channel(serving.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        asks = [reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="hub.v1.GenerationService")]
        listed, described = list(stub.ServerReflectionInfo(iter(asks), timeout=10))
    names = {s.name for s in listed.list_services_response.service}
    assert set(SERVICES) | {"grpc.health.v1.Health"} <= names
    assert described.file_descriptor_response.file_descriptor_proto  # what grpcurl uses to build requests


def test_generate_remote_streams_progress_for_the_cli(tiny: TinyHub, serving: ServeProcess) -> None:
    seen: list[tuple[int, int]] = []
    samples, described = generate_remote(serving.address, IMAGE_MODEL, num_samples=3, seed=1, steps=4, home=tiny.home,
                                         progress=lambda step, total: seen.append((step, total)))
    assert samples.shape == (3, 1, 8, 8) and seen[-1] == (4, 4) and seen == sorted(set(seen))  # coalesced when slower
    assert described.startswith(f"{IMAGE_MODEL}:1 (sha256:") and serving.address in described
    with pytest.raises(errors.NotFound):
        generate_remote(serving.address, "missing-model", home=tiny.home)


def test_cli_generate_with_server_writes_a_png_grid(tiny: TinyHub, serving: ServeProcess, tmp_path: Path) -> None:
    from hub.cli import cli
    from hub.plugins import load_plugins

    out = tmp_path / "grid.png"
    args = ["--home", str(tmp_path / "unused-home"), "generate", IMAGE_MODEL, "-n", "4", "--seed", "2", "--steps", "3",
            "--server", serving.address, "--token", read_tokens_file(tokens_path(tiny.home))["generate"], "-o", str(out)]
    result = CliRunner().invoke(cli, args, obj=load_plugins())
    assert result.exit_code == 0, result.output
    assert Image.open(out).size[0] > 8  # a grid, enlarged for people
    assert not (tmp_path / "unused-home").exists()  # the remote path never opened a local registry


def test_sigterm_drains_calls_in_flight_then_returns(tiny: TinyHub) -> None:
    """serve() as `genhub serve` runs it, on this (main) thread, with a real SIGTERM mid-stream."""
    seen: list[object] = []

    def client_side(address: str) -> None:
        with Client(address, timeout=60, home=tiny.home) as client:
            stream = client.stream_generate(IMAGE_MODEL, seed=4, steps=20, params={"step_sleep_s": 0.02})
            seen.append(next(stream))
            os.kill(os.getpid(), signal.SIGTERM)  # while sampling
            seen.extend(stream)

    threads: list[threading.Thread] = []

    def on_ready(handle: ServerHandle) -> None:
        threads.append(threading.Thread(target=client_side, args=(handle.address,), daemon=True))
        threads[0].start()

    asyncio.run(asyncio.wait_for(serve(tiny.hub, "127.0.0.1:0", grace_s=30, on_ready=on_ready), timeout=60))
    threads[0].join(30)  # the server sent the result before it stopped; let the client finish reading it
    assert isinstance(seen[-1], RemoteGeneration), seen[-1:]  # the stream finished, not cut off
    # Sampling went on to its last step after the SIGTERM. A reader slower than a 20 ms step (a loaded machine)
    # gets the newest progress, older events coalesced: not every step is promised, the order and the last one are.
    steps = [e.step for e in seen if isinstance(e, StepProgress)]
    assert steps == sorted(set(steps)) and steps[-1] == 20, steps


def test_genhub_serve_on_postgresql_generates_logs_and_stops(tiny_pg: TinyHub) -> None:
    """`genhub serve --db postgresql+psycopg://...`: the registry read, the generation log written, SIGTERM clean."""
    process = ServeProcess(tiny_pg)
    try:
        with Client(process.address, timeout=60, home=tiny_pg.home) as client:
            assert IMAGE_MODEL in [m.name for m in client.list_models()]
            result = client.generate(IMAGE_MODEL, num_samples=2, seed=5, steps=2)
        logged = wait_for(lambda: {g.id: g for g in tiny_pg.hub.registry.generations(limit=20)}.get(result.generation_id),
                          what=f"generation {result.generation_id} in the PostgreSQL log")
        assert (logged.status, logged.seed, logged.num_samples) == ("ok", 5, 2)
        assert process.terminate() == 0, process.log
    finally:
        process.kill()


def test_metrics_address_serves_the_series(tiny: TinyHub, serving: ServeProcess) -> None:
    from tests.server.test_metrics import delta, scrape

    found = re.search(r"genhub metrics on http://(\S+)/metrics", serving.log)
    assert found, serving.log
    version = str(tiny.hub.resolve(IMAGE_MODEL).version)
    before = scrape(found.group(1))
    with Client(serving.address, timeout=60, home=tiny.home) as client:
        client.generate(IMAGE_MODEL, seed=1, steps=2)
    after = scrape(found.group(1))
    assert delta(before, after, "genhub_requests_total", model=IMAGE_MODEL, version=version, code="OK") == 1
