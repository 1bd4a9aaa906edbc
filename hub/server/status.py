"""Domain errors <-> gRPC status codes, in exactly one place.

Every gRPC front end (the embedded server here, the Ray Serve backend) maps
``hub.errors`` through ``status_for``; clients map a status back to the same
domain class with ``error_for``, so the CLI prints one message whichever way it
ran.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, AsyncIterator, Awaitable, Callable

import grpc
from grpc import aio

from hub import errors

log = logging.getLogger(__name__)

# Order matters only for subclasses; these classes are siblings.
_CODES: dict[type[errors.GenhubError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Cancelled: grpc.StatusCode.CANCELLED,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.ArtifactCorrupt: grpc.StatusCode.DATA_LOSS,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
}
_CLASSES: dict[grpc.StatusCode, type[errors.GenhubError]] = {code: cls for cls, code in _CODES.items()}


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message a client sees for ``exc``.

    Domain errors keep their message (it names the field and the fix), without
    server file paths and cut to ``errors.MAX_ERROR_CHARS``; anything else is a
    server bug: INTERNAL, with the type but not the details.
    """
    for cls, code in _CODES.items():
        if isinstance(exc, cls):
            return code, errors.clean_message(str(exc))
    if isinstance(exc, errors.GenhubError):
        return grpc.StatusCode.INTERNAL, errors.clean_message(str(exc))
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the server log"


def error_for(code: grpc.StatusCode, details: str) -> errors.GenhubError:
    """The domain error for a status a server sent (the reverse of ``status_for``)."""
    if code == grpc.StatusCode.UNAVAILABLE:
        return errors.Unavailable(f"server unavailable: {details}; is `genhub serve` running at that address?")
    cls = _CLASSES.get(code, errors.GenhubError)
    if cls is errors.InvalidArgument:
        field, _, message = details.partition(": ")
        return errors.InvalidArgument(field, message) if message else errors.InvalidArgument("request", details)
    return cls(details)


async def _abort(context: aio.ServicerContext, exc: BaseException) -> None:
    code, message = status_for(exc)
    if code == grpc.StatusCode.INTERNAL:
        log.exception("unexpected error in %s", type(exc).__name__, exc_info=exc)
    await context.abort(code, message)


class DomainErrorInterceptor(aio.ServerInterceptor):
    """Turns a ``GenhubError`` raised by any handler into its status code.

    Handlers raise domain errors and never build status codes themselves.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # no client-streaming RPCs in hub.v1


def _wrap_unary(behavior: Callable[[Any, aio.ServicerContext], Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapped(request: Any, context: aio.ServicerContext) -> Any:
        try:
            return await behavior(request, context)
        except errors.GenhubError as exc:
            await _abort(context, exc)
        except Exception as exc:  # noqa: BLE001 - anything else is INTERNAL, logged
            if isinstance(exc, aio.AbortError):
                raise
            await _abort(context, exc)

    return wrapped


def _wrap_stream(behavior: Callable[[Any, aio.ServicerContext], Any]) -> Callable[..., Any]:
    if not inspect.isasyncgenfunction(behavior):
        # A coroutine that writes its messages with context.write (grpcio-health's Watch): await it as one call.
        return _wrap_unary(behavior)

    async def wrapped(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in behavior(request, context):
                yield item
        except errors.GenhubError as exc:
            await _abort(context, exc)
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, aio.AbortError):
                raise
            await _abort(context, exc)

    return wrapped
