"""A fix for Serve's gRPC proxy, installed through the servicer function Serve imports in each proxy actor.

Ray Serve 2.60's proxy cancels the deployment call behind a server-streaming RPC
only when the client's cancellation reaches it as ``CancelledError`` inside
``ProxyResponseGenerator.__anext__``. When grpc.aio instead abandons the handler
while it is suspended at a ``yield`` (seen for every cancelled StreamGenerate in
tests/ray), the generator is closed with ``GeneratorExit`` and the call is never
cancelled: the ingress, and the replica behind it, sample to the last step for nobody.

``add_GenerationServiceServicer_to_server`` (listed in the Serve config instead of the
generated one) registers the service as usual and wraps Serve's handler factory:
each server-streaming handler notes the ``ProxyResponseGenerator`` objects it opens
and cancels those still running when the handler ends without finishing. If a Ray
version lacks the internals this relies on, it logs a warning and changes nothing.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any, AsyncIterator, Callable

from hub.v1 import generation_pb2_grpc

log = logging.getLogger(__name__)

# The ProxyResponseGenerators opened by the streaming handler running in this task (None: not in one).
_OPENED: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar("genhub_proxy_opened", default=None)
_PATCHED = "_genhub_cancels_abandoned_streams"


def add_GenerationServiceServicer_to_server(servicer: Any, server: Any) -> None:  # noqa: N802 - grpc's naming
    _install(server)
    generation_pb2_grpc.add_GenerationServiceServicer_to_server(servicer, server)


def _install(server: Any) -> None:
    try:
        from ray.serve._private.proxy_request_response import gRPCStreamingType
        from ray.serve._private.proxy_response_generator import ProxyResponseGenerator

        factory: Callable[..., Any] = server.service_handler_factory
    except (ImportError, AttributeError) as exc:
        log.warning("genhub: cannot install the streaming-cancellation fix in this Ray version (%s); "
                    "cancelled StreamGenerate calls may keep sampling", exc)
        return
    if getattr(server, _PATCHED, False):
        return
    if not getattr(ProxyResponseGenerator, _PATCHED, False):
        original_init = ProxyResponseGenerator.__init__

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original_init(self, *args, **kwargs)
            opened = _OPENED.get()
            if opened is not None:
                opened.append(self)

        ProxyResponseGenerator.__init__ = __init__
        setattr(ProxyResponseGenerator, _PATCHED, True)

    def service_handler_factory(service_method: str, streaming_type: Any) -> Any:
        handler = factory(service_method=service_method, streaming_type=streaming_type)
        if streaming_type != gRPCStreamingType.UNARY_STREAM:
            return handler

        async def unary_stream(request_proto: Any, context: Any) -> AsyncIterator[Any]:
            opened: list[Any] = []
            _OPENED.set(opened)  # this task's context: the proxy's nested generators run in it
            finished = False
            try:
                async for message in handler(request_proto, context):
                    yield message
                finished = True
            finally:
                if not finished:  # the client went away (or the handler failed): stop the deployment call
                    for generator in opened:
                        response = getattr(generator, "_response", None)
                        if response is not None and not response.cancelled():
                            response.cancel()

        return unary_stream

    server.service_handler_factory = service_handler_factory
    setattr(server, _PATCHED, True)
