"""The Ray ingress routes task requests as the local server does (no Ray instance: the handle is a stand-in)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from hub.client import build_request
from hub.ray.app import HubArgs, Ingress
from hub import auth
from hub.server import convert
from hub.v1 import generation_pb2
from tests.server.harness import open_tiny_hub, record_figures, register_trained


class Context:
    """The bits of a Serve gRPC context the ingress reads, and sets on failure."""

    code: Any = None
    details = ""

    def __init__(self, metadata: list[tuple[str, str]] | None = None) -> None:
        self.metadata = metadata or []

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self.metadata

    def set_code(self, code: Any) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details


class Handle:
    """A DeploymentHandle stand-in: records what the ingress forwards, answers with an empty response."""

    def __init__(self) -> None:
        self.calls: list[tuple[convert.ParsedRequest, Any, float | None]] = []
        self.generate = self
        self.model_id = ""

    def options(self, **options: Any) -> Handle:
        self.model_id = options.get("multiplexed_model_id", self.model_id)
        return self

    async def remote(self, parsed: convert.ParsedRequest, version: Any, deadline: float | None) -> generation_pb2.GenerateResponse:
        self.calls.append((parsed, version, deadline))
        return generation_pb2.GenerateResponse(model_version=convert.version_ref(version), seed=parsed.seed)


def test_the_ingress_routes_a_task_and_says_why(tmp_path: Path) -> None:
    tiny = open_tiny_hub(tmp_path / "home")
    try:
        fast = register_trained(tiny.hub, "fast-rough", "digits").ref
        record_figures(tiny.hub, fast, fd=40.0, latency=8.0, sampler=None, steps=1)
        auth.create_initial_tokens(tiny.hub.registry, tiny.home)  # the ingress checks tokens, as on a real server
        bearer = ("authorization", f"Bearer {auth.read_tokens_file(auth.tokens_path(tiny.home))[auth.GENERATE]}")
        handle = Handle()
        ingress = Ingress(HubArgs(db_url=tiny.db_url, home=str(tiny.home)), {"fast-rough": handle})  # type: ignore[dict-item]

        response = asyncio.run(ingress.Generate(build_request(task="digits", latency_budget_ms=50, seed=4), Context([bearer])))
        assert handle.model_id == "fast-rough:1" and handle.calls[0][0].request.steps == 1
        assert response.model_version.name == "fast-rough" and response.steps == 1
        assert response.routed_reason.startswith("routed to fast-rough:1")
        assert handle.calls[0][2] is None  # no genhub-timeout-ms: no deadline

        sent = time.time()
        asyncio.run(ingress.Generate(build_request(task="digits", latency_budget_ms=50), Context([bearer, convert.timeout_metadata(2.5)])))
        deadline = handle.calls[1][2]
        assert deadline is not None and sent + 2.5 <= deadline <= time.time() + 2.5  # wall clock, for the replica

        context = Context([bearer])
        with pytest.raises(Exception, match="the fastest is fast-rough:1 at 8.0 ms"):
            asyncio.run(ingress.Generate(build_request(task="digits", latency_budget_ms=5), context))
        assert context.code == grpc.StatusCode.NOT_FOUND
        with pytest.raises(Exception, match="latency_budget_ms: is required with task"):
            asyncio.run(ingress.Generate(build_request(task="digits"), context))
        assert context.code == grpc.StatusCode.INVALID_ARGUMENT
        ingress.hub_thread.close()
        ingress.hub.close()
    finally:
        tiny.hub.close()
