"""hub.ray.proxy without a Ray instance: an abandoned server-streaming handler cancels its deployment call."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from ray.serve._private.proxy_request_response import gRPCStreamingType
from ray.serve._private.proxy_response_generator import ProxyResponseGenerator

from hub.ray import proxy


class Response:
    """Stands in for a DeploymentResponseGenerator."""

    def __init__(self) -> None:
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled


class Server:
    """Stands in for Serve's gRPCGenericServer: its handlers open a ProxyResponseGenerator and yield, as Serve's do."""

    def __init__(self) -> None:
        self.responses: list[Response] = []

    def service_handler_factory(self, service_method: str, streaming_type: Any) -> Any:
        async def handler(request: Any, context: Any) -> AsyncIterator[int]:
            response = Response()
            self.responses.append(response)
            ProxyResponseGenerator(response)  # type: ignore[arg-type]
            for i in range(int(request)):
                await asyncio.sleep(0)
                yield i

        return handler


async def consume(server: Server, messages: int, take: int) -> list[int]:
    handler = server.service_handler_factory(service_method="/m", streaming_type=gRPCStreamingType.UNARY_STREAM)
    stream = handler(messages, None)
    taken: list[int] = []
    async for item in stream:
        taken.append(item)
        if len(taken) == take:
            break
    await stream.aclose()  # what grpc.aio's cleanup does to a handler the client abandoned: GeneratorExit at its yield
    return taken


def test_an_abandoned_stream_cancels_its_deployment_call_and_a_finished_one_does_not() -> None:
    server = Server()
    proxy._install(server)
    proxy._install(server)  # idempotent
    assert asyncio.run(consume(server, messages=10, take=2)) == [0, 1]
    assert asyncio.run(consume(server, messages=2, take=5)) == [0, 1]
    assert [r.cancelled() for r in server.responses] == [True, False]
    unary = server.service_handler_factory(service_method="/m", streaming_type=gRPCStreamingType.UNARY_UNARY)
    assert unary.__name__ == "handler"  # only server-streaming handlers are wrapped
