"""The Ray Serve application: the hub.v1 gRPC API in front of one deployment per served model.

    serve run hub.ray.app:build_app db_url=sqlite:////shared/genhub/registry.db home=/shared/genhub

Serve's gRPC proxy routes each hub.v1 RPC by method name to ``Ingress``, which
validates the request (``hub.server.convert``), resolves the model reference in
the registry (or routes a task request: ``hub.server.services.target``, by figures
measured on the ingress's hardware) and forwards it by ``DeploymentHandle`` to that model's deployment,
``ModelServer``. One deployment per model (not per version): resources and
autoscaling are per model, and the replicas multiplex the model's versions with
``@serve.multiplexed`` (model id ``name:version``), so a version registered or
aliased after deployment is served without redeploying. Unary generation is
batched with ``@serve.batch``; streaming runs one request per sampling call.

Load and deadlines: each model deployment's handle queue is bounded
(``max_queued_requests``); past it a request answers RESOURCE_EXHAUSTED. Serve's
gRPC proxy does not pass a call's deadline on, so clients send it as metadata
``genhub-timeout-ms``; the ingress turns it into a wall-clock deadline, and a
replica stops sampling once every request of the sampling call is past its deadline
(or cancelled): a batch keeps running for the requests still waiting for it. A
client that cancels a stream reaches the replica through ``hub.ray.proxy``.

Weights reach replicas by digest from the artifact store (``home`` or
``artifacts_root`` on a filesystem every node mounts; ``Hub.load`` verifies the
digest). Errors leave through ``hub.server.status.status_for``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import grpc
import torch
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from hub import errors
from hub.core import Hub
from hub.metrics import RayMetrics, StepTimer
from hub.model import StepEvent
from hub.ray.constants import INGRESS_MAX_ONGOING, INGRESS_NAME, INGRESS_OPTIONS, deployment_name
from hub.ray.runner import alive_nodes
from hub.ray.settings import Overrides, ServeSettings, settings_for
from hub.registry.db import require_shared_backend
from hub.registry.paths import default_db_url
from hub.server import convert
from hub.server.batching import Job, merge
from hub.inference import grpc_predict_v2_pb2 as oip
from hub.server import inference_codec as codec
from hub.server.inference_codec import Signature, signature
from hub.server.services import HubThread, Observed, RegistryService, Resolver, observed, target
from hub.server.status import status_for
from hub.v1 import generation_pb2, types_pb2

log = logging.getLogger(__name__)
STOPPED = (errors.Cancelled, errors.DeadlineExceeded)  # outcomes of requests stopped on purpose, not failures


@dataclass(frozen=True)
class HubArgs:
    """Where replicas find the registry and the artifact store (shared by every node)."""

    db_url: str | None = None
    home: str | None = None
    artifacts_root: str | None = None

    def open(self) -> Hub:
        return Hub.open(db_url=self.db_url, home=self.home, artifacts_root=self.artifacts_root, sync=False)


@dataclass
class Work:
    """One generation request inside a replica (a ``Job`` without the local server's queue)."""

    parsed: convert.ParsedRequest
    version: Any  # VersionRecord
    deadline: float | None = None  # time.time() seconds (wall clock: set by the ingress, maybe on another node)
    cancelled: bool = False
    arrived: float = field(default_factory=time.monotonic)  # at the replica, before @serve.batch's wait
    _job: Job | None = None

    def job(self, fmt: int) -> Job:
        deadline = None if self.deadline is None else time.monotonic() + (self.deadline - time.time())
        self._job = Job(request=self.parsed.request, seed=self.parsed.seed, version=self.version, fmt=fmt, deadline=deadline,
                        future=asyncio.get_running_loop().create_future(), enqueued_at=self.arrived, cancelled=self.cancelled)
        return self._job

    def cancel(self) -> None:
        """The caller went away: its job stops sampling at the next step (once its batch mates are done too)."""
        self.cancelled = True
        if self._job is not None:
            self._job.cancelled = True


class ModelServer:
    """The replicas of one model: load versions by digest, batch unary calls, stream progress."""

    def __init__(self, model: str, hub_args: HubArgs, settings: dict[str, Any]) -> None:
        self.settings = ServeSettings(**settings)
        torch.set_num_threads(max(1, int(self.settings.num_cpus)))  # more threads than CPUs thrash
        self.model = model
        self.hub = hub_args.open()
        self.hub_thread = HubThread(self.hub)
        self.device = "cuda" if self.settings.num_gpus > 0 and torch.cuda.is_available() else "cpu"
        self._sampler = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sample-{model}")
        self.metrics = RayMetrics()
        self.generate_batch.set_max_batch_size(self.settings.max_batch_size)
        self.generate_batch.set_batch_wait_timeout_s(self.settings.batch_wait_timeout_s)

        async def load(ref: str) -> Any:  # a plain function: Serve keeps its LRU of loaded versions on it
            return await self._load(ref)

        self.load_version = serve.multiplexed(max_num_models_per_replica=self.settings.max_versions_per_replica)(load)

    async def _load(self, ref: str) -> Any:
        """The model of version ``ref`` (``name:version``); the artifact store verifies the weights' digest."""
        return (await self.hub_thread.run(self.hub.load, ref, self.device)).model

    async def signature(self, version: Any) -> Signature:
        """What the open protocol's ModelMetadata says of ``version`` (read from the loaded model)."""
        return signature(await self.load_version(version.ref), version.family)

    # -- unary: @serve.batch ------------------------------------------------------------------

    async def generate(self, parsed: convert.ParsedRequest, version: Any,
                       deadline: float | None = None) -> generation_pb2.GenerateResponse | errors.GenhubError:
        """A domain error comes back as a value (Ray would wrap a raised one)."""
        work = Work(parsed, version, deadline)
        try:
            model = await self.load_version(version.ref)
            convert.check_supported(model.capabilities, parsed.request)  # fails alone, before @serve.batch
            return await self.generate_batch(work)
        except errors.GenhubError as exc:
            return exc
        except asyncio.CancelledError:  # the client went away: @serve.batch would sample for nobody
            work.cancel()
            raise

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def generate_batch(self, works: list[Work]) -> list[Any]:
        groups: dict[Any, list[tuple[int, Job]]] = {}
        results: list[Any] = [None] * len(works)
        for i, work in enumerate(works):
            try:
                model = await self.load_version(work.version.ref)
                job = work.job(convert.resolve_format(work.parsed.format, model.output_kind, work.parsed.model))
            except errors.GenhubError as exc:
                results[i] = exc
                continue
            if job.dead():  # expired or cancelled while waiting for the batch: not worth sampling
                results[i] = (await self._log([job], [_stop_reason(job, " while it waited for a batch")]))[0]
                continue
            groups.setdefault((work.version.artifact_digest, job.key), []).append((i, job))
        for members in groups.values():
            jobs = [job for _, job in members]
            outcomes = await self._sample(jobs, record=len(jobs) == 1)
            if len(jobs) > 1:
                failed = [o for o in outcomes if isinstance(o, Exception) and not isinstance(o, STOPPED)]
                if failed:  # one bad request must not fail the rest
                    outcomes = [(await self._sample([job]))[0] for job in jobs]
                else:
                    outcomes = await self._log(jobs, outcomes)
            for (i, job), outcome in zip(members, outcomes):
                results[i] = outcome
        return results

    async def _sample(self, jobs: list[Job], events: asyncio.Queue[generation_pb2.Progress | None] | None = None, *,
                      record: bool = True) -> list[Any]:
        """One sampling call for ``jobs``; each gets a GenerateResponse or its error (logged in the registry if ``record``).

        The call stops early only when every job is cancelled or past its deadline: the others still want the batch.
        """
        loop = asyncio.get_running_loop()
        model = await self.load_version(jobs[0].version.ref)
        offset = 0
        for job in jobs:
            job.offset, offset = offset, offset + job.num_samples
        reached: list[StepEvent] = []  # the last step done, for the stop message
        ref = jobs[0].version.ref
        self.metrics.sampling_call(ref, offset)
        step_timer = StepTimer(self.metrics, ref, time.perf_counter)

        def run() -> list[list[types_pb2.Image]]:
            def on_step(event: StepEvent) -> bool:
                step_timer()
                reached[:] = [event]
                if events is not None:
                    previews = convert.preview_messages(event.preview, jobs[0].fmt) if event.preview is not None else []
                    progress = generation_pb2.Progress(step=event.step, total=event.total, previews=previews)
                    loop.call_soon_threadsafe(events.put_nowait, progress)
                now = time.monotonic()
                return not all(job.dead(now) for job in jobs)  # False: report_step raises Cancelled

            samples = model.sample(merge(jobs), on_step).detach().to("cpu")  # [N, C, H, W] or [N, 2]
            return [convert.image_messages(samples[j.offset : j.offset + j.num_samples], j.fmt) for j in jobs]

        started = time.monotonic()
        try:
            images: list[Any] = await loop.run_in_executor(self._sampler, run)
        except errors.Cancelled:  # our own on_step stopped it
            where = f" at step {reached[0].step} of {reached[0].total}" if reached else " before sampling started"
            images = [_stop_reason(job, where) for job in jobs]
        except Exception as exc:  # noqa: BLE001 - returned per request; a model bug is INTERNAL
            if not isinstance(exc, errors.GenhubError):
                log.exception("model %s failed", self.model)
            images = [exc] * len(jobs)
        duration = time.monotonic() - started
        outcomes: list[Any] = []
        for job, job_images in zip(jobs, images):
            if isinstance(job_images, BaseException):
                outcomes.append(job_images)
                continue
            if job.expired():  # its batch mates kept the call running; its client has given up
                outcomes.append(_stop_reason(job, " before its batch finished"))
                continue
            outcomes.append(generation_pb2.GenerateResponse(
                images=job_images, model_version=convert.version_ref(job.version), seed=job.seed,
                duration_seconds=duration, queue_seconds=started - job.enqueued_at, batch_samples=offset,
            ))
        return await self._log(jobs, outcomes) if record else outcomes

    async def _log(self, jobs: list[Job], outcomes: list[Any]) -> list[Any]:
        """Log each request in the registry and put the generation ids into the responses."""

        def status(outcome: Any) -> tuple[str, str | None, float]:
            if isinstance(outcome, generation_pb2.GenerateResponse):
                return "ok", None, outcome.duration_seconds
            if isinstance(outcome, errors.DeadlineExceeded):
                return "deadline", str(outcome), 0.0
            if isinstance(outcome, errors.Cancelled):
                return "cancelled", str(outcome), 0.0
            return "error", f"{type(outcome).__name__}: {outcome}", 0.0

        def write() -> list[int]:
            return [self.hub.log_generation(j.version, j.request, j.seed, duration, state, error)
                    for j, (state, error, duration) in zip(jobs, map(status, outcomes))]

        try:
            ids = await self.hub_thread.run(write)
        except Exception:  # a registry hiccup must not lose the images
            log.exception("could not log %d generation(s) of %s", len(jobs), self.model)
            ids = [0] * len(jobs)
        for outcome, generation_id in zip(outcomes, ids):
            if isinstance(outcome, generation_pb2.GenerateResponse):
                outcome.generation_id = generation_id
        return outcomes

    # -- streaming ----------------------------------------------------------------------------

    async def stream(self, parsed: convert.ParsedRequest, version: Any, deadline: float | None = None) -> AsyncIterator[Any]:
        """Yields Progress messages, then the GenerateResponse (or a domain error, as a value)."""
        work = Work(parsed, version, deadline)
        try:
            model = await self.load_version(version.ref)
            convert.check_supported(model.capabilities, parsed.request)
            job = work.job(convert.resolve_format(parsed.format, model.output_kind, parsed.model))
        except errors.GenhubError as exc:
            yield exc
            return
        events: asyncio.Queue[generation_pb2.Progress | None] = asyncio.Queue()
        task = asyncio.ensure_future(self._sample([job], events))
        task.add_done_callback(lambda _: events.put_nowait(None))
        try:
            while (progress := await events.get()) is not None:
                yield progress
            yield task.result()[0]
        finally:
            work.cancel()  # the client went away (or we are done): stop at the next step


def _stop_reason(job: Job, where: str) -> errors.GenhubError:
    if job.expired():
        return errors.DeadlineExceeded(f"the request's deadline passed{where}; allow a longer deadline or fewer steps")
    return errors.Cancelled(f"the client cancelled the request{where}")


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


class Ingress:
    """hub.v1 RegistryService + GenerationService, and the open inference protocol's GRPCInferenceService, method
    for method, for Serve's gRPC proxy."""

    def __init__(self, hub_args: HubArgs, models: dict[str, DeploymentHandle], alias_ttl_s: float = 1.0) -> None:
        self.hub = hub_args.open()
        self.hub_thread = HubThread(self.hub)
        self.resolver = Resolver(self.hub_thread, alias_ttl_s)
        self.registry = RegistryService(self.hub_thread, self.resolver)
        self.models = models
        self.metrics = RayMetrics()

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
                       seen: Observed | None = None) -> generation_pb2.GenerateResponse:
        """Run one validated request on its model's replicas: the path of every unary wire format (hub.v1, the open
        inference protocol). Raises domain errors (a full queue is ResourceExhausted). ``seen``: for the metrics."""
        parsed, version, handle = await self._route(parsed)
        if seen is not None:
            seen.ref = version.ref
        try:
            result = await handle.generate.remote(parsed, version, deadline)  # cancelled with this call
        except BaseException as exc:
            cause = _unwrap(exc, version.model)
            if cause is exc:
                raise
            raise cause from exc
        if isinstance(result, BaseException):
            raise result
        if seen is not None:
            seen.queue_s = result.queue_seconds
        return convert.annotate_response(result, parsed)

    async def Generate(self, request: generation_pb2.GenerateRequest, grpc_context: Any = None) -> generation_pb2.GenerateResponse:
        try:
            with observed(self.metrics, request.model, grpc_context, _unwrap) as seen:
                return await self.generate(convert.parse_generate(request), _deadline(grpc_context), seen)
        except BaseException as exc:
            _fail(exc, grpc_context)

    async def StreamGenerate(self, request: generation_pb2.StreamGenerateRequest, grpc_context: Any = None) -> AsyncIterator[Any]:
        responses, model = None, None
        try:
            with observed(self.metrics, request.request.model, grpc_context, lambda exc: _unwrap(exc, model)) as seen:
                deadline = _deadline(grpc_context)
                parsed, version, handle = await self._route(convert.parse_generate(request.request, request.preview_every))
                model, seen.ref = version.model, version.ref
                responses = handle.options(stream=True).stream.remote(parsed, version, deadline)
                async for item in responses:
                    if isinstance(item, BaseException):
                        raise item
                    if isinstance(item, generation_pb2.Progress):
                        yield generation_pb2.StreamGenerateResponse(progress=item)
                    else:
                        seen.queue_s = item.queue_seconds
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
            parsed, timeout = codec.parse_infer(request)
            deadline = _deadline(grpc_context)
            if timeout is not None:  # Triton's timeout parameter: the earlier of it and genhub-timeout-ms
                deadline = min(deadline, time.time() + timeout) if deadline is not None else time.time() + timeout
            return codec.infer_response(request, await self.generate(parsed, deadline))
        except BaseException as exc:
            _fail(exc, grpc_context)

def _deadline(grpc_context: Any) -> float | None:
    """The call's deadline (time.time() seconds) from its ``genhub-timeout-ms`` metadata; None when not sent."""
    timeout = convert.parse_timeout(grpc_context.invocation_metadata()) if grpc_context is not None else None
    return None if timeout is None else time.time() + timeout


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


def build(hub_args: HubArgs, settings: dict[str, ServeSettings], alias_ttl_s: float = 1.0) -> Any:
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
    return ingress.bind(hub_args, models, alias_ttl_s)


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
    ``set`` (a list of MODEL.KEY=VALUE) over the registry's tags; ``alias_ttl_s``.
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
    return build(hub_args, settings, float(args.get("alias_ttl_s", 1.0)))
