"""Fuzz every RPC a real `genhub serve` lists through reflection: never UNKNOWN or INTERNAL, still healthy, bounded memory.

Services are discovered through reflection, so a service added to the server is fuzzed without editing this
file. ``GENHUB_FUZZ_N`` sets the requests per method (default 120, about 20 s on 2 cores; set it higher for a longer run).
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hub import auth
from hub.client import Client, build_request
from tests.server.fuzz import Fuzzer, rss_bytes
from tests.server.harness import IMAGE_MODEL, POINTS_MODEL, ServeProcess, TinyHub, open_tiny_hub
from hub.v1 import generation_pb2, registry_pb2
from tests.server.reflect import served_methods_of

REQUESTS = int(os.environ.get("GENHUB_FUZZ_N", "120"))
MAX_GROWTH_BYTES = 150 * 1024 * 1024  # after a warm-up pass has loaded the models and filled the caches
GENERATE = build_request(IMAGE_MODEL, num_samples=2, steps=2, seed=1)
TEMPLATES = {  # valid requests the fuzzer mutates one field at a time, to reach the code behind validation
    "/hub.v1.GenerationService/Generate": GENERATE,
    "/hub.v1.GenerationService/StreamGenerate": generation_pb2.StreamGenerateRequest(request=GENERATE, preview_every=1),
    "/hub.v1.RegistryService/GetModel": registry_pb2.GetModelRequest(name=IMAGE_MODEL),
    "/hub.v1.RegistryService/SetAlias": registry_pb2.SetAliasRequest(model=IMAGE_MODEL, alias="fuzzed", version=1),
}
KNOWN = [IMAGE_MODEL, POINTS_MODEL, f"{IMAGE_MODEL}:1", f"{IMAGE_MODEL}@latest", f"{POINTS_MODEL}:1", "digits", "gmm-ring8"]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TinyHub, ServeProcess]]:
    """A `genhub serve` of its own (fuzzed SetAlias calls move its aliases), on a hub of its own."""
    tiny = open_tiny_hub(tmp_path_factory.mktemp("genhub-fuzz"), bundled=False)
    process = ServeProcess(tiny)
    try:
        yield tiny, process
        assert process.terminate() == 0, process.log[-5000:]
    finally:
        process.kill()
        tiny.hub.close()


def fuzz_all(address: str, metadata: list[tuple[str, str]], requests: int, seed: int) -> dict[str, Counter[str]]:
    """``requests`` random requests to every method reflection lists, eight callers at a time."""
    with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]) as channel:
        methods = served_methods_of(channel)
        with ThreadPoolExecutor(8) as pool:
            futures = {m.path: [pool.submit(_batch, address, m, metadata, seed * 1000 + i, requests // 8 + (i < requests % 8))
                                for i in range(8)] for m in methods}
            return {path: sum((f.result() for f in fs), Counter()) for path, fs in futures.items()}


def _batch(address: str, method, metadata, seed: int, n: int) -> Counter[str]:  # noqa: ANN001
    with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]) as channel:
        return Fuzzer(channel, seed, known=KNOWN, metadata=metadata, templates=TEMPLATES).run(method, n)


def assert_healthy(address: str, tiny: TinyHub) -> None:
    with grpc.insecure_channel(address) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    with Client(address, timeout=60, home=tiny.home) as client:
        assert client.generate(IMAGE_MODEL, seed=0, steps=2).samples.shape == (1, 1, 8, 8)


def test_every_rpc_survives_random_well_typed_requests(fuzzed: tuple[TinyHub, ServeProcess]) -> None:
    tiny, process = fuzzed
    admin = auth.bearer_metadata(auth.read_tokens_file(auth.tokens_path(tiny.home))[auth.ADMIN])
    warm = fuzz_all(process.address, admin, max(8, REQUESTS // 4), seed=1)  # loads the models, fills the caches
    before = rss_bytes(process.process.pid)
    seen = fuzz_all(process.address, admin, REQUESTS, seed=2)
    grown = rss_bytes(process.process.pid) - before
    print({path: dict(counts) for path, counts in seen.items()})  # shown with -s, or on failure
    assert process.process.poll() is None, process.log[-5000:]
    assert_healthy(process.address, tiny)
    services = {path.split("/")[1] for path in seen}
    assert {"hub.v1.RegistryService", "hub.v1.GenerationService", "grpc.health.v1.Health"} <= services, services
    assert all(sum(c.values()) == REQUESTS for c in seen.values())
    assert any(c["OK"] for c in seen.values()) and warm  # not only refusals: requests reached the handlers
    assert grown < MAX_GROWTH_BYTES, f"the server grew by {grown / 2**20:.0f} MiB over {REQUESTS} requests per method"
