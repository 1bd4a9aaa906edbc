"""The Ray Serve application: the hub.v1 gRPC API in front of one deployment per served model.

    serve run hub.ray.app:build_app db_url=sqlite:////shared/genhub/registry.db home=/shared/genhub

Serve's gRPC proxy routes each hub.v1 RPC by method name to ``Ingress``, which
validates the request (``hub.server.convert``), resolves the model reference in
the registry (or routes a task request: ``hub.server.services.target``, by figures
measured on the ingress's hardware) and forwards it by ``DeploymentHandle`` to that model's deployment,
``ModelServer``. One deployment per model (not per version): resources and
autoscaling are per model, and each replica loads the versions it is asked for
(an LRU of loaded weights; calls carry the multiplexed model id ``name:version``
for affinity), so a version registered or aliased after deployment is served
without redeploying. Each replica runs ``hub.engine``, the local server's engine:
unary and streaming calls share network passes (step-level batching).

Load and deadlines: each model deployment's handle queue is bounded
(``max_queued_requests``); past it a request answers RESOURCE_EXHAUSTED. Serve's
gRPC proxy does not pass a call's deadline on, so clients send it as metadata
``genhub-timeout-ms``; the ingress turns it into a wall-clock deadline, and the
engine drops a request's rows at the next pass once it is past its deadline (or
cancelled). A client that cancels a stream reaches the replica through ``hub.ray.proxy``.

Weights reach replicas by digest from the artifact store (``home`` or
``artifacts_root`` on a filesystem every node mounts; ``Hub.load`` verifies the
digest). Errors leave through ``hub.server.status.status_for``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, AsyncIterator

import grpc
import torch
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from hub import errors
from hub import metrics as series
from hub.core import Hub
from hub.ray.constants import INGRESS_MAX_ONGOING, INGRESS_NAME, INGRESS_OPTIONS, deployment_name
from hub.ray.runner import alive_nodes
from hub.ray.security import HealthMethods, authenticator_for, secure
from hub.ray.settings import Overrides, ServeSettings, settings_for
from hub.registry.db import require_shared_backend
from hub.registry.paths import default_db_url
from hub.server import convert
from hub.engine import Engine, EngineOptions, Job, Latest
from hub.engine.models import ModelCache, load_through_cache
from hub.inference import grpc_predict_v2_pb2 as oip
from hub.server import inference_codec as codec
from hub.server.inference_codec import Signature, signature
from hub.engine.hub_thread import HubThread
from hub.server.services import RegistryService, Resolver, engine_job, generate_response, record_generations, target
from hub.server.status import status_for
from hub.v1 import generation_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HubArgs:
    """Where replicas find the registry and the artifact store (shared by every node)."""

    db_url: str | None = None
    home: str | None = None
    artifacts_root: str | None = None

    def open(self) -> Hub:
        return Hub.open(db_url=self.db_url, home=self.home, artifacts_root=self.artifacts_root, sync=False)


class ModelServer:
    """The replicas of one model: the same engine as the local server, one per replica (an asyncio task).

    Unary and streaming calls alike become engine jobs, so concurrent calls share network passes (step-level
    batching), capped at ``max_batch_size`` rows. Loaded weights are an LRU (``max_versions_per_replica``,
    ``max_loaded_bytes``): an evicted model's lane closes and the hub's cache lets go of it.
    """

    def __init__(self, model: str, hub_args: HubArgs, settings: dict[str, Any]) -> None:
        self.settings = s = ServeSettings(**settings)
        torch.set_num_threads(max(1, int(s.num_cpus)))  # more threads than CPUs thrash
        self.model = model
        self.hub = hub_args.open()
        self.hub.log_enabled = bool(s.generation_log)
        self.hub.log_retention = timedelta(seconds=s.log_retention_s) if s.log_retention_s else None
        self.hub_thread = HubThread(self.hub)
        self.device = "cuda" if s.num_gpus > 0 and torch.cuda.is_available() else "cpu"
        self.metrics = series.RayMetrics()  # the same series as genhub serve's, exported by Ray
        self.engine = Engine(
            EngineOptions(max_batch=s.max_batch_size, max_request_cost=s.max_request_cost,
                          max_queued_cost=8 * s.max_request_cost, max_request_s=s.max_request_seconds),
            record=lambda jobs: record_generations(self.hub, jobs),
            observer=series.MetricsObserver(self.metrics),
        )
        self.models = ModelCache(s.max_versions_per_replica, s.max_loaded_bytes or None)
        if self.hub.log_enabled:
            self.hub.generation_log  # its writer thread starts now (pruning first), ids reserved before the first request ends

    async def _load(self, version: Any) -> Any:
        """The model of ``version``'s weights (the artifact store verifies their digest), through the replica's LRU."""
        return await load_through_cache(self.models, self.engine, self.hub_thread, version, self.device, self.metrics.loaded)

    async def _submit(self, parsed: convert.ParsedRequest, version: Any, deadline: float | None,
                      events: Latest[generation_pb2.Progress] | None) -> Job:
        """``deadline`` is wall-clock (set by the ingress, maybe on another node); the engine counts monotonic time."""
        model = await self._load(version)
        convert.check_supported(model.capabilities, parsed.request)  # an unsupported field fails alone, before queueing
        monotonic = None if deadline is None else time.monotonic() + (deadline - time.time())
        job = engine_job(parsed, version, model, monotonic, events)
        self.engine.submit(job)
        return job

    async def signature(self, version: Any) -> Signature:
        """What the open protocol's ModelMetadata says of ``version`` (read from the loaded model)."""
        return signature(await self._load(version), version.family)

    async def generate(self, parsed: convert.ParsedRequest, version: Any,
                       deadline: float | None = None) -> generation_pb2.GenerateResponse | Exception:
        """An error comes back as a value (Ray would wrap a raised one)."""
        try:
            job = await self._submit(parsed, version, deadline, None)
        except errors.GenhubError as exc:
            return exc
        assert job.future is not None
        try:
            await asyncio.shield(job.future)
        finally:
            job.cancel()  # no-op once finished; a cancelled call (client gone) leaves at the next pass
        return _response_or_error(job, self.model)

    async def stream(self, parsed: convert.ParsedRequest, version: Any, deadline: float | None = None) -> AsyncIterator[Any]:
        """Yields Progress messages (the newest undelivered one: a slow reader costs constant memory), then the
        GenerateResponse (or the error, as a value)."""
        events: Latest[generation_pb2.Progress] = Latest()
        try:
            job = await self._submit(parsed, version, deadline, events)
        except errors.GenhubError as exc:
            yield exc
            return
        assert job.future is not None
        job.future.add_done_callback(lambda _: events.close())
        try:
            while (progress := await events.get()) is not None:
                yield progress
            await job.future
            yield _response_or_error(job, self.model)
        finally:
            job.cancel()  # the client went away (or we are done): its rows leave at the next pass


def _response_or_error(job: Job, model: str) -> generation_pb2.GenerateResponse | Exception:
    try:
        return generate_response(job)
    except errors.GenhubError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - a model bug: INTERNAL at the ingress, logged here
        log.error("model %s failed", model, exc_info=exc)
        return exc


def _unwrap(exc: BaseException, model: str | None = None) -> BaseException:
    """The domain error behind an exception a handle call raised; infrastructure errors become Unavailable."""
    if isinstance(exc, RayActorError):
        return errors.Unavailable("the replica serving this request stopped (it died or was removed); retry the request")
    if isinstance(exc, RayTaskError) and isinstance(exc.cause, BaseException):
        return _unwrap(exc.cause, model)
    if isinstance(exc, BackPressureError):  # the handle's queue in front of the model's replicas is full
        limit = exc.args[1] if len(exc.args) > 1 else "?"
        name = f"model {model}" if model else "the model"
        return errors.ResourceExhausted(
            f"{name} is at capacity: {limit} request(s) already wait for a free replica (max_queued_requests={limit}); "
            "retry with backoff, or raise the model's serving setting max_queued_requests or max_replicas")
    return exc


@secure  # every RPC method checks the caller's token first (hub.server.auth's table)
class Ingress(HealthMethods):
    """hub.v1 RegistryService + GenerationService, and the open inference protocol's GRPCInferenceService, method
    for method, for Serve's gRPC proxy; grpc.health.v1 from ``HealthMethods``."""

    def __init__(self, hub_args: HubArgs, models: dict[str, DeploymentHandle], alias_ttl_s: float = 1.0,
                 auth_enabled: bool = True) -> None:
        self.hub = hub_args.open()
        self.hub_thread = HubThread(self.hub)
        self.resolver = Resolver(self.hub_thread, alias_ttl_s)
        self.registry = RegistryService(self.hub_thread, self.resolver)
        self.models = models
        self.authenticator = authenticator_for(self, auth_enabled)
        self.metrics = series.RayMetrics()  # genhub_requests_total and the request durations; replicas record the rest

    async def _call(self, coroutine: Any, grpc_context: Any) -> Any:
        try:
            return await coroutine
        except BaseException as exc:
            _fail(exc, grpc_context)

    async def ListPlugins(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._call(self.registry.ListPlugins(request, grpc_context), grpc_context)

    async def ListModels(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._call(self.registry.ListModels(request, grpc_context), grpc_context)

    async def GetModel(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._call(self.registry.GetModel(request, grpc_context), grpc_context)

    async def ListVersions(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._call(self.registry.ListVersions(request, grpc_context), grpc_context)

    async def SetAlias(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._call(self.registry.SetAlias(request, grpc_context), grpc_context)

    async def _route(self, parsed: convert.ParsedRequest) -> tuple[Any, Any, DeploymentHandle]:
        parsed, version = await target(self.hub_thread, self.resolver, parsed)
        return parsed, version, self._handle(version)

    def _handle(self, version: Any) -> DeploymentHandle:
        handle = self.models.get(version.model)
        if handle is None:
            raise errors.NotFound(f"model {version.model} is in the registry but not deployed in this Serve application; "
                                  "add it with `genhub deploy render` and redeploy")
        return handle.options(multiplexed_model_id=version.ref)

    async def generate(self, parsed: convert.ParsedRequest, deadline: float | None,
                       timed: series.Request) -> generation_pb2.GenerateResponse:
        """Run one validated request on its model's replicas: the path of every unary wire format (hub.v1, the open
        inference protocol). Raises domain errors (a full queue is ResourceExhausted). ``timed``: the caller's
        ``hub.metrics.request``, opened before it parsed the request (a refused parse counts)."""
        parsed, version, handle = await self._route(parsed)
        timed.resolved(version)
        try:
            result = await handle.generate.remote(parsed, version, deadline)  # cancelled with this call
        except BaseException as exc:
            cause = _unwrap(exc, version.model)
            if cause is exc:
                raise
            raise cause from exc
        if isinstance(result, BaseException):
            raise result
        return convert.annotate_response(result, parsed)

    async def Generate(self, request: generation_pb2.GenerateRequest, grpc_context: Any = None) -> generation_pb2.GenerateResponse:
        try:
            with series.request(self.metrics, _request_id(grpc_context)) as timed:
                return await self.generate(convert.parse_generate(request), _deadline(grpc_context), timed)
        except BaseException as exc:
            _fail(exc, grpc_context)

    async def StreamGenerate(self, request: generation_pb2.StreamGenerateRequest, grpc_context: Any = None) -> AsyncIterator[Any]:
        responses, model = None, None
        try:
            with series.request(self.metrics, _request_id(grpc_context)) as timed:
                deadline = _deadline(grpc_context)
                parsed, version, handle = await self._route(convert.parse_generate(request.request, request.preview_every))
                model = version.model
                timed.resolved(version)
                responses = handle.options(stream=True).stream.remote(parsed, version, deadline)
                async for item in responses:
                    if isinstance(item, BaseException):
                        raise item
                    if isinstance(item, generation_pb2.Progress):
                        yield generation_pb2.StreamGenerateResponse(progress=item)
                    else:
                        yield generation_pb2.StreamGenerateResponse(result=convert.annotate_response(item, parsed))
                responses = None
        except BaseException as exc:
            _fail(exc, grpc_context, model)
        finally:
            if responses is not None:  # the client went away: stop the replica's sampling too
                responses.cancel()


    # -- the open inference protocol (KServe V2): ModelInfer runs through ``generate``, like Generate -----------

    async def ServerLive(self, request: oip.ServerLiveRequest, grpc_context: Any = None) -> oip.ServerLiveResponse:
        return oip.ServerLiveResponse(live=True)

    async def ServerReady(self, request: oip.ServerReadyRequest, grpc_context: Any = None) -> oip.ServerReadyResponse:
        return oip.ServerReadyResponse(ready=True)  # the proxy routes here only once the application is running

    async def ServerMetadata(self, request: oip.ServerMetadataRequest, grpc_context: Any = None) -> oip.ServerMetadataResponse:
        return codec.server_metadata()

    async def ModelReady(self, request: oip.ModelReadyRequest, grpc_context: Any = None) -> oip.ModelReadyResponse:
        return await self._call(self._model_ready(request), grpc_context)

    async def _model_ready(self, request: oip.ModelReadyRequest) -> oip.ModelReadyResponse:
        """Ready when the reference resolves to a version of a model this application deploys."""
        ref = codec.model_ref(request.name, request.version, name_field="name", version_field="version")
        try:
            version = await self.resolver.resolve(ref)
        except errors.NotFound:
            return oip.ModelReadyResponse(ready=False)
        return oip.ModelReadyResponse(ready=version.model in self.models)

    async def ModelMetadata(self, request: oip.ModelMetadataRequest, grpc_context: Any = None) -> oip.ModelMetadataResponse:
        return await self._call(self._model_metadata(request), grpc_context)

    async def _model_metadata(self, request: oip.ModelMetadataRequest) -> oip.ModelMetadataResponse:
        ref = codec.model_ref(request.name, request.version, name_field="name", version_field="version")
        version = await self.resolver.resolve(ref)
        sig = await self._handle(version).signature.remote(version)  # the replica has the model loaded
        versions = await self.hub_thread.run(self.hub.registry.list_versions, version.model)
        return codec.metadata_response(request.name, [v.version for v in versions], sig)

    async def ModelInfer(self, request: oip.ModelInferRequest, grpc_context: Any = None) -> oip.ModelInferResponse:
        try:
            with series.request(self.metrics, _request_id(grpc_context)) as timed:  # a refused parse counts too
                parsed, timeout = codec.parse_infer(request)
                deadline = _deadline(grpc_context)
                if timeout is not None:  # Triton's timeout parameter: the earlier of it and genhub-timeout-ms
                    deadline = min(deadline, time.time() + timeout) if deadline is not None else time.time() + timeout
                return codec.infer_response(request, await self.generate(parsed, deadline, timed))
        except BaseException as exc:
            _fail(exc, grpc_context)

def _deadline(grpc_context: Any) -> float | None:
    """The call's deadline (time.time() seconds) from its ``genhub-timeout-ms`` metadata; None when not sent."""
    timeout = convert.parse_timeout(grpc_context.invocation_metadata()) if grpc_context is not None else None
    return None if timeout is None else time.time() + timeout


def _request_id(grpc_context: Any) -> str:
    return series.caller_request_id(grpc_context.invocation_metadata()) if grpc_context is not None else ""


def _fail(exc: BaseException, grpc_context: Any, model: str | None = None) -> None:
    """Set the status ``status_for`` gives and re-raise (Serve keeps a status set before the raise)."""
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        raise exc
    cause = _unwrap(exc, model)
    code, message = status_for(cause)
    if code == grpc.StatusCode.INTERNAL:
        log.error("unexpected error", exc_info=cause)
    if grpc_context is not None:
        grpc_context.set_code(code)
        grpc_context.set_details(message)
    raise errors.GenhubError(message)  # plain and picklable: the proxy reads the status set above


def build(hub_args: HubArgs, settings: dict[str, ServeSettings], alias_ttl_s: float = 1.0, auth_enabled: bool = True) -> Any:
    """The Serve application graph: an ingress bound to one ``ModelServer`` deployment per model."""
    models = {
        name: serve.deployment(ModelServer).options(
            name=deployment_name(name),
            ray_actor_options=s.ray_actor_options(),
            autoscaling_config=s.autoscaling_config(),
            max_ongoing_requests=s.max_ongoing_requests,
            max_queued_requests=s.max_queued_requests,
        ).bind(name, hub_args, s.to_dict())
        for name, s in sorted(settings.items())
    }
    ingress = serve.deployment(Ingress).options(name=INGRESS_NAME, ray_actor_options=INGRESS_OPTIONS,
                                                max_ongoing_requests=INGRESS_MAX_ONGOING)
    return ingress.bind(hub_args, models, alias_ttl_s, auth_enabled)


def plan(hub: Hub, overrides: Overrides | None = None, models: list[str] | None = None) -> dict[str, ServeSettings]:
    """Serving settings of every model in the registry that has a version (or of ``models``)."""
    names = models if models else [m.name for m in _all_models(hub) if m.latest_version is not None]
    return {name: settings_for(hub, name, overrides) for name in names}


def _all_models(hub: Hub) -> list[Any]:
    records, token = hub.registry.list_models(page_size=1000)
    while token:
        more, token = hub.registry.list_models(page_size=1000, page_token=token)
        records += more
    return records


def build_app(args: dict[str, Any]) -> Any:
    """Application builder for `serve run hub.ray.app:build_app` and Serve config files.

    args: ``db_url``, ``home``, ``artifacts_root`` (shared by every node); ``settings``
    ({MODEL: {KEY: VALUE}}, as `genhub deploy render` writes them: exactly these models), or else
    ``models`` (names; default every model in the registry) with ``overrides`` (a YAML path) and
    ``set`` (a list of MODEL.KEY=VALUE) over the registry's tags; ``alias_ttl_s``; ``auth`` (default true:
    calls need tokens from the registry, ``genhub token create``).
    """
    hub_args = HubArgs(args.get("db_url"), args.get("home"), args.get("artifacts_root"))
    home = Path(hub_args.home) if hub_args.home else None
    require_shared_backend(hub_args.db_url or default_db_url(home), alive_nodes())  # several nodes: not SQLite
    if args.get("settings") is not None:
        settings = {name: ServeSettings().replace(values, f"settings of {name}") for name, values in args["settings"].items()}
    else:
        overrides = Overrides.load(args.get("overrides"), args.get("set") or ())
        with Hub.open(db_url=hub_args.db_url, home=hub_args.home, artifacts_root=hub_args.artifacts_root) as hub:
            settings = plan(hub, overrides, args.get("models"))
    return build(hub_args, settings, float(args.get("alias_ttl_s", 1.0)), bool(args.get("auth", True)))
