"""Who may call what: one table from full gRPC method names to the scope they need, checked in one place.

The local server checks it in ``AuthInterceptor`` before any handler runs; the
Ray ingress calls ``Authenticator.check`` with the same method names. A method
served but missing from the table is refused (default deny), so a new RPC must
be given a scope here before anyone can call it.

Tokens travel as metadata ``authorization: Bearer <token>``. No or an unknown
(or expired) token: UNAUTHENTICATED. A valid token without the scope:
PERMISSION_DENIED naming it. The server keeps the registry's token hashes in
memory for ``refresh_s`` (a revoked token stops working within it) and compares
a presented token's hash against every one of them in constant time.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any, Awaitable, Callable, Iterable

import grpc
from grpc import aio

from hub import auth
from hub.errors import PermissionDenied, Unauthenticated
from hub.registry.orm import utcnow
from hub.registry.tokens import ActiveToken

log = logging.getLogger(__name__)

OPEN = None  # no token needed
HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICES = ("grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection")
OIP_SERVICE = "inference.GRPCInferenceService"

METHOD_SCOPES: dict[str, str | None] = {
    # hub.v1: reads and generation need `generate`; anything that changes the registry needs `admin`.
    "/hub.v1.RegistryService/ListPlugins": auth.GENERATE,
    "/hub.v1.RegistryService/ListModels": auth.GENERATE,
    "/hub.v1.RegistryService/GetModel": auth.GENERATE,
    "/hub.v1.RegistryService/ListVersions": auth.GENERATE,
    "/hub.v1.RegistryService/SetAlias": auth.ADMIN,
    "/hub.v1.GenerationService/Generate": auth.GENERATE,
    "/hub.v1.GenerationService/StreamGenerate": auth.GENERATE,
    # The Open Inference Protocol (KServe v2) on the same port. Liveness and readiness stay open, like
    # grpc.health.v1: orchestrators probe them without credentials and they reveal only up/down.
    # ServerMetadata names the server's version and extensions, so it needs a token.
    f"/{OIP_SERVICE}/ServerLive": OPEN,
    f"/{OIP_SERVICE}/ServerReady": OPEN,
    f"/{OIP_SERVICE}/ServerMetadata": auth.GENERATE,
    f"/{OIP_SERVICE}/ModelReady": auth.GENERATE,
    f"/{OIP_SERVICE}/ModelMetadata": auth.GENERATE,
    f"/{OIP_SERVICE}/ModelInfer": auth.GENERATE,
    f"/{OIP_SERVICE}/ModelStreamInfer": auth.GENERATE,
    # Health checks and reflection are open (`--health-needs-token` / `--no-reflection` close them).
    f"/{HEALTH_SERVICE}/Check": OPEN,
    f"/{HEALTH_SERVICE}/Watch": OPEN,
    f"/{HEALTH_SERVICE}/List": OPEN,
    **{f"/{service}/ServerReflectionInfo": OPEN for service in REFLECTION_SERVICES},
}
AUTH_METADATA = "authorization"
BEARER = "bearer "
HOW = ("send metadata `authorization: Bearer <token>`; the server's first start wrote tokens to tokens.json in its "
       "genhub home, and `genhub token create` makes more")


def method_scope(method: str, *, health_needs_token: bool = False) -> str | None:
    """The scope ``method`` (``/package.Service/Method``) needs; OPEN for health and reflection."""
    if method not in METHOD_SCOPES:
        raise PermissionDenied(f"{method[:200]} is not in the server's method table (hub.server.auth.METHOD_SCOPES); "
                               "no token may call it")
    scope = METHOD_SCOPES[method]
    if scope is OPEN and health_needs_token and method.startswith(f"/{HEALTH_SERVICE}/"):
        return auth.GENERATE
    return scope


def bearer_token(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The token of the ``authorization: Bearer <token>`` entry (None when there is none)."""
    for key, value in metadata or ():
        if key.lower() != AUTH_METADATA:
            continue
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        if len(text) > auth.MAX_TOKEN_CHARS + len(BEARER) or not text.lower().startswith(BEARER):
            raise Unauthenticated(f"the authorization metadata is not `Bearer <token>` (at most {auth.MAX_TOKEN_CHARS} "
                                  f"characters); {HOW}")
        return text[len(BEARER):].strip()
    return None


class Authenticator:
    """Checks a call's token against the registry's tokens (hashes cached in memory for ``refresh_s``)."""

    def __init__(self, load: Callable[[], Awaitable[list[ActiveToken]]], *, refresh_s: float = 1.0,
                 health_needs_token: bool = False) -> None:
        self._load = load
        self.refresh_s = refresh_s
        self.health_needs_token = health_needs_token
        self._tokens: list[ActiveToken] = []
        self._loaded_at = -float("inf")

    async def _active(self) -> list[ActiveToken]:
        if time.monotonic() - self._loaded_at >= self.refresh_s:
            self._tokens = await self._load()
            self._loaded_at = time.monotonic()
        return self._tokens

    async def check(self, method: str, metadata: Iterable[tuple[str, Any]] | None) -> None:
        """Raise Unauthenticated or PermissionDenied unless the call may run."""
        scope = method_scope(method, health_needs_token=self.health_needs_token)
        if scope is OPEN:
            return
        token = bearer_token(metadata)
        if not token:
            raise Unauthenticated(f"{method} needs a token with scope {scope!r}; {HOW}")
        match = self.match(token, await self._active())
        if match is None:
            raise Unauthenticated(f"unknown, revoked or expired token; {HOW}")
        if scope not in auth.GRANTS[match.scope]:
            raise PermissionDenied(f"{method} needs scope {scope!r}, but token {match.name!r} has scope {match.scope!r}; "
                                   f"use a token with scope {scope!r} (`genhub token create --scope {scope}`)")

    @staticmethod
    def match(token: str, tokens: list[ActiveToken]) -> ActiveToken | None:
        """The token whose hash equals ``token``'s: every stored hash is compared, in constant time."""
        presented = auth.token_hash(token).encode()
        now = utcnow()
        found = None
        for candidate in tokens:
            if hmac.compare_digest(presented, candidate.token_hash.encode()) and (
                candidate.expires_at is None or candidate.expires_at > now
            ):
                found = candidate
        return found


class AuthInterceptor(aio.ServerInterceptor):
    """Refuses a call before its handler runs unless ``Authenticator.check`` passes."""

    def __init__(self, authenticator: Authenticator, metrics: Any = None) -> None:
        self.authenticator = authenticator
        self.metrics = metrics  # a hub.metrics.Sink: refused generation calls count in genhub_requests_total

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:  # not served: UNIMPLEMENTED
            return handler
        from hub import metrics as series
        from hub.server.status import status_for

        method, metadata = handler_call_details.method, handler_call_details.invocation_metadata
        try:
            await self.authenticator.check(method, metadata)
        except (Unauthenticated, PermissionDenied) as exc:
            series.refused(self.metrics, method, exc, series.caller_request_id(metadata))
            return _refusal(handler, *status_for(exc))
        return handler


def _refusal(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of ``handler``'s kind that only answers ``code``."""

    async def refuse(request: Any, context: aio.ServicerContext) -> Any:
        await context.abort(code, message)

    async def refuse_stream(request: Any, context: aio.ServicerContext) -> Any:
        await context.abort(code, message)
        yield  # an async generator, as grpc expects of a streaming handler

    kinds = {
        "unary_unary": grpc.unary_unary_rpc_method_handler,
        "unary_stream": grpc.unary_stream_rpc_method_handler,
        "stream_unary": grpc.stream_unary_rpc_method_handler,
        "stream_stream": grpc.stream_stream_rpc_method_handler,
    }
    for kind, make in kinds.items():
        if getattr(handler, kind) is not None:
            behavior = refuse_stream if kind.endswith("_stream") else refuse
            return make(behavior, request_deserializer=handler.request_deserializer,
                        response_serializer=handler.response_serializer)
    raise AssertionError(f"a gRPC handler of no known kind: {handler!r}")
