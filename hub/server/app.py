"""The embedded gRPC server: grpc.aio, health per service, reflection, graceful stop.

    handle = await start(hub, "127.0.0.1:0")      # tests: an ephemeral port, handle.port
    await serve(hub, "127.0.0.1:50051")           # `genhub serve`: until SIGTERM / SIGINT

SIGTERM marks every service NOT_SERVING, stops accepting new calls, lets the
calls in flight finish (up to ``grace_s``), then exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from dataclasses import dataclass
from typing import Any, Callable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from hub import auth
from hub.core import Hub
from hub.engine import Engine, EngineOptions
from hub.engine.jobs import DEFAULT_MAX_REQUEST_COST
from hub.engine.models import ModelCache
from hub.metrics import Sink
from hub.inference import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from hub.server.auth import Authenticator, AuthInterceptor
from hub.server.inference_codec import SERVICE_NAME as INFERENCE_SERVICE_NAME
from hub.server.inference_service import InferenceService
from hub.engine.hub_thread import HubThread
from hub.server.services import GenerationService, RegistryService, Resolver
from hub.server.health import Health
from hub.server.status import DomainErrorInterceptor
from hub.tls import ServerTls, check_exposure
from hub.v1 import generation_pb2, generation_pb2_grpc, registry_pb2, registry_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_GRACE_S = 30.0
SERVICE_NAMES = (
    registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name,
    generation_pb2.DESCRIPTOR.services_by_name["GenerationService"].full_name,
    INFERENCE_SERVICE_NAME,  # the Open Inference Protocol (KServe V2), for Triton and KServe clients
)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # sent: 64 samples of raw 3x256x256 float32 fit
MAX_RECEIVE_BYTES = 4 * 1024 * 1024  # received: real requests are under 40 kB


def reflection_pool() -> descriptor_pool.DescriptorPool:
    """The proto files of every service this server answers, for server reflection.

    hub.v1, health and reflection live in protobuf's default pool; the open protocol's stubs in a private one
    (scripts/gen_protos.py: Triton's and KServe's clients register the same ``inference.*`` names in the
    default pool, and both must load in one process). Reflection reads one pool, so this copies them into one.
    """
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file: Any) -> None:
        if file.name in added:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.AddSerializedFile(proto.SerializeToString())
        added.add(file.name)

    for module in (registry_pb2, generation_pb2, grpc_predict_v2_pb2, health_pb2, reflection_pb2):
        add(module.DESCRIPTOR)
    return pool


@dataclass
class ServerHandle:
    """A started server: its bound port, its services, and how to stop it."""

    server: aio.Server
    port: int
    address: str
    generation: GenerationService
    inference: InferenceService
    hub_thread: HubThread
    health: Any  # grpc_health aio HealthServicer
    syncing: asyncio.Task[None] | None = None  # start(sync=True): the bundled models' sync, NOT_SERVING until it ends

    @property
    def engine(self) -> Engine:
        return self.generation.engine

    async def stop(self, grace_s: float | None = DEFAULT_GRACE_S) -> None:
        """Stop taking calls, drain those in flight (up to ``grace_s``), then release the models."""
        await self.health.enter_graceful_shutdown()  # health checkers (and the open protocol's ServerReady): not ready
        if self.syncing is not None:
            await asyncio.gather(self.syncing, return_exceptions=True)  # it runs on the hub thread, closed below
        await self.server.stop(grace_s)
        await self.generation.close()
        self.generation.resolver.close()
        self.hub_thread.close()


async def start(
    hub: Hub,
    address: str = DEFAULT_ADDRESS,
    *,
    max_batch: int = 64,
    max_request_cost: int = DEFAULT_MAX_REQUEST_COST,
    max_queued_cost: int | None = None,
    max_request_seconds: float | None = 600.0,
    max_loaded_models: int | None = 8,
    max_loaded_bytes: int | None = None,
    step_level: bool = True,
    alias_ttl_s: float = 1.0,
    auth_enabled: bool = True,
    tls: ServerTls | None = None,
    insecure: bool = False,
    max_receive_bytes: int = MAX_RECEIVE_BYTES,
    reflection_enabled: bool = True,
    health_needs_token: bool = False,
    metrics: Sink | None = None,
    sync: bool = False,
) -> ServerHandle:
    """Start serving ``hub`` on ``address`` (port 0: any free port); return once it listens.

    Scheduling and limits are ``hub.engine.EngineOptions`` (``max_queued_cost`` defaults to 8 x
    ``max_request_cost``); ``max_loaded_models`` / ``max_loaded_bytes`` bound the loaded-model LRU.
    ``alias_ttl_s``: how long a resolved ``name`` / ``name@alias`` is reused before the
    registry is asked again (an alias moved by another process shows up within it).
    ``auth_enabled``: calls need tokens (``hub.server.auth``); on a registry with none, the
    first start creates them and writes ``tokens.json`` into the hub's home. ``tls``:
    serve TLS (mutual with a client CA); a non-loopback address needs it or ``insecure``. ``metrics``: where the
    engine and the generation RPCs record their series (``hub.metrics.Metrics``; None: not recorded). ``sync``: sync
    the bundled models (``Hub.sync``) while already listening; health says NOT_SERVING until that is done.
    """
    check_exposure(address, tls, insecure)
    options = EngineOptions(
        max_batch=max_batch, max_request_cost=max_request_cost,
        max_queued_cost=max_queued_cost if max_queued_cost is not None else 8 * max_request_cost,
        max_request_s=max_request_seconds, step_level=step_level,
    )
    models = ModelCache(max_loaded_models, max_loaded_bytes)
    hub_thread = HubThread(hub)
    if hub.log_enabled:  # the log's writer starts now: its first id block is reserved before the first request ends
        await hub_thread.run(lambda: hub.generation_log)
    interceptors: list[aio.ServerInterceptor] = [DomainErrorInterceptor()]
    if auth_enabled:
        written = await hub_thread.run(auth.create_initial_tokens, hub.registry, hub.home)
        if written is not None:
            log.info("created an admin and a generate token; wrote them to %s (mode 0600)", written)
        store = hub.registry.tokens
        authenticator = Authenticator(lambda: hub_thread.run(store.active), health_needs_token=health_needs_token)
        interceptors.insert(0, AuthInterceptor(authenticator, metrics))  # first: refuse before any other work
    else:
        log.warning("authentication is off (--no-auth): anyone who reaches %s can generate and move aliases", address)
    server = aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", max_receive_bytes),
            ("grpc.so_reuseport", 0),  # a second server on a busy port must fail, not share it
        ],
    )
    resolver = Resolver(hub_thread, alias_ttl_s)
    generation = GenerationService(hub_thread, resolver, options, models, metrics)
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(RegistryService(hub_thread, resolver), server)
    generation_pb2_grpc.add_GenerationServiceServicer_to_server(generation, server)
    health_servicer = Health()
    inference = InferenceService(generation, health_servicer)
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(inference, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if reflection_enabled:
        reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server,
                                            pool=reflection_pool())
    try:
        port = server.add_secure_port(address, tls.credentials()) if tls else server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc raises RuntimeError when it cannot bind
        raise OSError(f"cannot listen on {address}: {exc}; is another server using that port? choose one with --address") from exc
    await server.start()
    await set_health(health_servicer, health_pb2.HealthCheckResponse.NOT_SERVING if sync else health_pb2.HealthCheckResponse.SERVING)
    host = address.rsplit(":", 1)[0]
    handle = ServerHandle(server, port, f"{host}:{port}", generation, inference, hub_thread, health_servicer)
    if sync:
        handle.syncing = asyncio.get_running_loop().create_task(_sync_then_serve(hub_thread, health_servicer))
    return handle


async def set_health(health_servicer: Any, status: Any) -> None:
    """Every service's status, and the whole server's ("") (ignored once a graceful shutdown began)."""
    for name in (*SERVICE_NAMES, ""):
        await health_servicer.set(name, status)


async def _sync_then_serve(hub_thread: HubThread, health_servicer: Any) -> None:
    try:
        await hub_thread.run(hub_thread.hub.sync)
    except Exception:  # stays NOT_SERVING: an orchestrator sends no traffic and the log says why
        log.exception("syncing the bundled models failed; health stays NOT_SERVING")
        return
    await set_health(health_servicer, health_pb2.HealthCheckResponse.SERVING)


async def serve(
    hub: Hub,
    address: str = DEFAULT_ADDRESS,
    *,
    grace_s: float = DEFAULT_GRACE_S,
    on_ready: Callable[[ServerHandle], None] | None = None,
    **options: Any,
) -> None:
    """Serve until SIGTERM or SIGINT, then drain in-flight calls and return."""
    handle = await start(hub, address, **options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if on_ready is not None:
        on_ready(handle)
    try:
        await stop.wait()
        log.info("stopping: draining calls in flight (up to %.0f s)", grace_s)
        await handle.stop(grace_s)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


class BackgroundServer:
    """A server on an event loop in a thread of its own, for tests, benchmarks and notebooks.

        with BackgroundServer(hub) as server:
            client = Client(server.address)
    """

    def __init__(self, hub: Hub, address: str = "127.0.0.1:0", **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="genhub-server", daemon=True)
        self._thread.start()
        self.handle: ServerHandle = self.call(start(hub, address, **options))

    @property
    def address(self) -> str:
        return self.handle.address

    def client(self, **kwargs: Any) -> Any:
        """A ``hub.client.Client`` for this server, with the tokens in its hub's home (``tokens.json``)."""
        from hub.client import Client

        return Client(self.address, home=self.handle.hub_thread.hub.home, **kwargs)

    @property
    def port(self) -> int:
        return self.handle.port

    def call(self, coroutine: Any, timeout: float | None = 60) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def run(self, fn: Callable[[], Any]) -> Any:
        """Run a plain function on the server's loop (to read worker state safely)."""

        async def wrapper() -> Any:
            return fn()

        return self.call(wrapper())

    def stop(self, grace_s: float | None = 5.0) -> None:
        if not self._thread.is_alive():
            return
        try:
            self.call(self.handle.stop(grace_s), timeout=(grace_s or 0) + 30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def channel_ready(address: str, timeout: float = 10.0) -> None:
    """Block until a server answers at ``address`` (raises grpc.FutureTimeoutError otherwise)."""
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=timeout)
