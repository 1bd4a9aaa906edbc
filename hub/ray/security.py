"""Tokens and health on the Ray ingress: the same method table as the local server (``hub.server.auth``).

Serve's gRPC proxy routes each RPC by method name to the ``Ingress`` deployment and has
no interceptors, so ``secure`` wraps every ingress method named in ``METHOD_SCOPES``
once, at class definition: the token in the call's ``authorization`` metadata is checked
before the method body runs. ``HealthMethods`` serves grpc.health.v1 (Check, Watch, List)
from the ingress, as the local server does.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any, AsyncIterator, Callable

from grpc_health.v1 import health_pb2

from hub import errors
from hub import metrics as series
from hub.server.auth import METHOD_SCOPES, Authenticator

SERVING = health_pb2.HealthCheckResponse.SERVING
HEALTH_SERVICES = ("", "hub.v1.RegistryService", "hub.v1.GenerationService", "inference.GRPCInferenceService")
_WATCH_POLL_S = 3600.0  # the ingress's status does not change while it runs; Watch holds the stream open


def secure(cls: type) -> type:
    """Wrap each method of ``cls`` that is an RPC in ``METHOD_SCOPES`` with the token check."""
    for path in METHOD_SCOPES:
        name = path.rsplit("/", 1)[1]
        method = getattr(cls, name, None)
        if method is not None:
            setattr(cls, name, _guard(method, path))
    return cls


def _guard(method: Callable[..., Any], path: str) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(method):
        @functools.wraps(method)
        async def stream(self: Any, request: Any, grpc_context: Any = None) -> AsyncIterator[Any]:
            try:
                await _check(self, path, grpc_context)
            except errors.GenhubError as exc:
                _fail(exc, grpc_context)
            async for item in method(self, request, grpc_context):
                yield item

        return stream

    @functools.wraps(method)
    async def unary(self: Any, request: Any, grpc_context: Any = None) -> Any:
        try:
            await _check(self, path, grpc_context)
        except errors.GenhubError as exc:
            _fail(exc, grpc_context)
        return await method(self, request, grpc_context)

    return unary


async def _check(ingress: Any, path: str, grpc_context: Any) -> None:
    authenticator: Authenticator | None = getattr(ingress, "authenticator", None)
    if authenticator is not None:
        metadata = grpc_context.invocation_metadata() if grpc_context is not None else ()
        try:
            await authenticator.check(path, metadata)
        except errors.GenhubError as exc:  # a refused generation call counts in genhub_requests_total
            series.refused(getattr(ingress, "metrics", None), path, exc, series.caller_request_id(metadata))
            raise


def _fail(exc: BaseException, grpc_context: Any) -> None:
    from hub.ray.app import _fail as fail  # the ingress's one way of answering a status (imported late: a cycle)

    fail(exc, grpc_context)


def authenticator_for(ingress: Any, enabled: bool) -> Authenticator | None:
    """The ingress's token checker, reading the registry's token hashes on its hub thread (None: --no-auth)."""
    if not enabled:
        return None
    store = ingress.hub.registry.tokens
    return Authenticator(lambda: ingress.hub_thread.run(store.active))


class HealthMethods:
    """grpc.health.v1 on the ingress: SERVING for the server ("") and each genhub service while it runs.

    `genhub serve --backend ray` syncs the bundled models before it deploys, and Serve's proxy routes to the ingress
    only once the application runs, so there is no not-yet-ready state to report: the open protocol's ServerReady
    (``hub.ray.app``) says ready whenever this says SERVING.
    """

    async def Check(self, request: health_pb2.HealthCheckRequest, grpc_context: Any = None) -> health_pb2.HealthCheckResponse:
        if request.service not in HEALTH_SERVICES:
            _fail(errors.NotFound(f"no service {request.service[:200]!r}; health knows {', '.join(HEALTH_SERVICES[1:])}"),
                  grpc_context)
        return health_pb2.HealthCheckResponse(status=SERVING)

    async def Watch(self, request: health_pb2.HealthCheckRequest, grpc_context: Any = None) -> AsyncIterator[Any]:
        known = request.service in HEALTH_SERVICES
        yield health_pb2.HealthCheckResponse(status=SERVING if known else health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
        while True:  # until the client goes away (the proxy cancels this generator)
            await asyncio.sleep(_WATCH_POLL_S)

    async def List(self, request: health_pb2.HealthListRequest, grpc_context: Any = None) -> health_pb2.HealthListResponse:
        return health_pb2.HealthListResponse(
            statuses={name: health_pb2.HealthCheckResponse(status=SERVING) for name in HEALTH_SERVICES})
