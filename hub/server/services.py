"""The gRPC servicers of package hub.v1: RegistryService and GenerationService.

Handlers raise ``hub.errors`` domain errors; ``hub.server.status`` turns them
into status codes. Registry and model-loading calls run on one dedicated thread,
so the event loop never blocks on SQLite and the database sees one writer.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Callable, Iterator, TypeVar

from grpc import aio

from hub.cards import render_card
from hub.core import Hub
from hub.errors import Cancelled, DeadlineExceeded, InvalidArgument
from hub.metrics import Metrics
from hub.registry.refs import parse_ref
from hub.server import convert
from hub.server.batching import BatchOptions, Job, JobResult, ModelWorker
from hub.server.status import status_for
from hub.v1 import generation_pb2, generation_pb2_grpc, registry_pb2, registry_pb2_grpc

T = TypeVar("T")


class HubThread:
    """One thread for everything that touches the registry or loads weights."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="genhub-registry")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class Resolver:
    """Model reference -> VersionRecord, cached so the hot path skips the database.

    ``name:3`` never changes meaning, so it is cached for good; ``name`` and
    ``name@alias`` for ``alias_ttl_s``, since another process (`genhub alias`)
    may move an alias. SetAlias through this server clears the cache at once; on
    PostgreSQL so does an alias move anywhere (LISTEN/NOTIFY, ``Registry.watch_aliases``),
    and the TTL is only the backstop for a lost notification connection.
    """

    MAX_ENTRIES = 4096

    def __init__(self, hub_thread: HubThread, alias_ttl_s: float = 1.0) -> None:
        self.hub_thread = hub_thread
        self.alias_ttl_s = alias_ttl_s
        self._cache: dict[str, tuple[Any, float | None]] = {}  # ref -> (version, expires at; None: never)
        self._epoch = 0  # bumped by the watcher thread; the cache is cleared on the next resolve
        self._cache_epoch = 0
        self.watcher = hub_thread.hub.registry.watch_aliases(self._moved)

    def _moved(self, model: str | None) -> None:
        self._epoch += 1  # an int store: atomic under the GIL, read on the event loop

    async def resolve(self, ref: str) -> Any:
        now = time.monotonic()
        if self._cache_epoch != self._epoch:
            self._cache_epoch = self._epoch
            self._cache.clear()
        hit = self._cache.get(ref)
        if hit is not None and (hit[1] is None or now < hit[1]):
            return hit[0]
        epoch = self._epoch
        version = await self.hub_thread.run(self.hub_thread.hub.resolve, ref)
        if epoch != self._epoch:  # an alias moved while we read: do not cache what may be stale
            return version
        if len(self._cache) >= self.MAX_ENTRIES:
            self._cache.clear()
        self._cache[ref] = (version, None if parse_ref(ref).version is not None else now + self.alias_ttl_s)
        return version

    def invalidate(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.close()


async def target(hub_thread: HubThread, resolver: Resolver, parsed: convert.ParsedRequest) -> tuple[convert.ParsedRequest, Any]:
    """The version a parsed request runs on: the model it names, or the one its task routes to.

    Routing (``Hub.route_settings``) picks the best-quality version of the task's dataset whose p50 latency
    measured on this hardware fits the budget; the request then takes that version's sampler and steps where
    it left them empty, and the task's class as its class label where it set none. Shared by the local
    servicer and the Ray ingress.
    """
    if parsed.task is None:
        return parsed, await resolver.resolve(parsed.model)
    return await hub_thread.run(route_request, hub_thread.hub, parsed)


def route_request(hub: Hub, parsed: convert.ParsedRequest) -> tuple[convert.ParsedRequest, Any]:
    """``target`` for a task request, on the hub thread (routing reads the registry)."""
    task, request = parsed.task, parsed.request
    assert task is not None
    labels = request.class_labels
    label = labels[0] if labels else None
    condition_field = "task.condition" if task.condition is not None else "class_label"
    condition = task.condition if task.condition is not None else (str(label) if label is not None else None)
    try:
        index = hub.class_index(task.dataset, condition) if condition is not None else None
        if task.condition is not None and label is not None and label != index:
            raise InvalidArgument(
                "class_label", f"is {label} but task.condition {task.condition!r} is class {index} of {task.dataset!r}; "
                "leave class_label unset or make the two agree"
            )
        route = hub.route_settings(task.dataset, task.budget_ms, index)
    except InvalidArgument as exc:
        if exc.field != "condition":
            raise
        raise InvalidArgument(condition_field, str(exc)[len(exc.field) + 2 :]) from exc
    request = replace(
        request,
        sampler=request.sampler or route.sampler,
        steps=request.steps or route.steps,
        class_labels=labels if labels is not None or index is None else [index] * request.num_samples,
    )
    routed = replace(parsed, model=route.ref, request=request, routed_reason=route.describe())
    return routed, route.version


class RegistryService(registry_pb2_grpc.RegistryServiceServicer):
    """Read the registry and move aliases."""

    def __init__(self, hub_thread: HubThread, resolver: Resolver) -> None:
        self.hub_thread = hub_thread
        self.hub = hub_thread.hub
        self.resolver = resolver

    async def ListPlugins(self, request: registry_pb2.ListPluginsRequest, context: aio.ServicerContext) -> registry_pb2.ListPluginsResponse:
        owners = self.hub.parts.owners
        return registry_pb2.ListPluginsResponse(plugins=[convert.plugin_message(p, owners) for p in self.hub.plugins()])

    async def ListModels(self, request: registry_pb2.ListModelsRequest, context: aio.ServicerContext) -> registry_pb2.ListModelsResponse:
        if request.page_size > convert.MAX_PAGE_SIZE:
            raise InvalidArgument("page_size", f"must be between 1 and {convert.MAX_PAGE_SIZE} (or 0 for {convert.DEFAULT_PAGE_SIZE}), got {request.page_size}")
        page_size = request.page_size or convert.DEFAULT_PAGE_SIZE
        convert.check_length("page_token", request.page_token, convert.MAX_PAGE_TOKEN_CHARS)
        return await self.hub_thread.run(self._list_models, page_size, request.page_token)

    def _list_models(self, page_size: int, page_token: str) -> registry_pb2.ListModelsResponse:
        records, next_token = self.hub.registry.list_models(page_size=page_size, page_token=page_token)
        models = [convert.model_message(m, _aliases(self.hub.registry.list_versions(m.name))) for m in records]
        return registry_pb2.ListModelsResponse(models=models, next_page_token=next_token or "")

    async def GetModel(self, request: registry_pb2.GetModelRequest, context: aio.ServicerContext) -> registry_pb2.GetModelResponse:
        if not request.name:
            raise InvalidArgument("name", "is required; give a model name such as ddpm-digits")
        convert.check_length("name", request.name, convert.MAX_NAME_CHARS)
        return await self.hub_thread.run(self._get_model, request.name)

    def _get_model(self, name: str) -> registry_pb2.GetModelResponse:
        registry = self.hub.registry
        record = registry.get_model(name)
        versions = registry.list_versions(name)
        return registry_pb2.GetModelResponse(
            model=convert.model_message(record, _aliases(versions)),
            versions=[self._version_message(v) for v in versions],
        )

    def _version_message(self, version: Any) -> registry_pb2.ModelVersion:
        """A version with its metrics, training runs and card (its own, or one rendered from the registry)."""
        registry = self.hub.registry
        card = version.card or render_card(self.hub, version.ref)
        return convert.version_message(version, registry.metrics(version.ref), registry.training_runs(version.ref), card)

    async def ListVersions(self, request: registry_pb2.ListVersionsRequest, context: aio.ServicerContext) -> registry_pb2.ListVersionsResponse:
        if not request.model:
            raise InvalidArgument("model", "is required; give a model name such as ddpm-digits")
        convert.check_length("model", request.model, convert.MAX_NAME_CHARS)
        return await self.hub_thread.run(self._list_versions, request.model)

    def _list_versions(self, name: str) -> registry_pb2.ListVersionsResponse:
        return registry_pb2.ListVersionsResponse(versions=[self._version_message(v) for v in self.hub.registry.list_versions(name)])

    async def SetAlias(self, request: registry_pb2.SetAliasRequest, context: aio.ServicerContext) -> registry_pb2.SetAliasResponse:
        for field in ("model", "alias", "version"):
            if not getattr(request, field):
                raise InvalidArgument(field, "is required (SetAlias needs model, alias and version)")
        convert.check_length("model", request.model, convert.MAX_NAME_CHARS)
        convert.check_length("alias", request.alias, convert.MAX_ALIAS_CHARS)
        record = await self.hub_thread.run(self.hub.registry.set_alias, request.model, request.alias, request.version)
        self.resolver.invalidate()
        return registry_pb2.SetAliasResponse(version=await self.hub_thread.run(self._version_message, record))


def _aliases(versions: list[Any]) -> dict[str, int]:
    return {alias: v.version for v in versions for alias in v.aliases}


class GenerationService(generation_pb2_grpc.GenerationServiceServicer):
    """Generate through per-model batching workers; every request is logged in the registry and counted."""

    def __init__(self, hub_thread: HubThread, resolver: Resolver, options: BatchOptions, metrics: Metrics | None = None) -> None:
        self.hub_thread = hub_thread
        self.hub = hub_thread.hub
        self.resolver = resolver
        self.options = options
        self.metrics = metrics or Metrics()
        self.workers: dict[tuple[str, str], ModelWorker] = {}  # (weights digest, family) -> its worker

    async def Generate(self, request: generation_pb2.GenerateRequest, context: aio.ServicerContext) -> generation_pb2.GenerateResponse:
        with observed(self.metrics, request.model, context) as seen:
            return await self.generate(convert.parse_generate(request), call_deadline(context), seen)

    async def generate(self, parsed: convert.ParsedRequest, deadline: float | None,
                       seen: Observed | None = None) -> generation_pb2.GenerateResponse:
        """Run one validated request to its result: the path every unary wire format (hub.v1, the open inference
        protocol) takes, so admission, batching, deadlines, cancellation and the generation log are the same.
        ``seen``: where the request's metrics learn its version and queue time."""
        job, parsed = await self._submit(parsed, deadline, stream=False)
        if seen is not None:
            seen.ref = f"{job.version.model}:{job.version.version}"
        try:
            result = await job.future
        finally:
            job.abandon()
        if seen is not None:
            seen.queue_s = result.queue_s
        return convert.annotate_response(_response(job, result), parsed)

    async def StreamGenerate(
        self, request: generation_pb2.StreamGenerateRequest, context: aio.ServicerContext
    ) -> AsyncIterator[generation_pb2.StreamGenerateResponse]:
        with observed(self.metrics, request.request.model, context) as seen:
            parsed = convert.parse_generate(request.request, request.preview_every)
            job, parsed = await self._submit(parsed, call_deadline(context), stream=True)
            seen.ref = f"{job.version.model}:{job.version.version}"
            assert job.events is not None
            try:
                while (progress := await job.events.get()) is not None:
                    yield generation_pb2.StreamGenerateResponse(progress=progress)
                result = job.future.result()
            finally:
                job.abandon()  # a client that went away stops its sampling at the next step
            seen.queue_s = result.queue_s
            yield generation_pb2.StreamGenerateResponse(result=convert.annotate_response(_response(job, result), parsed))

    async def _submit(self, parsed: convert.ParsedRequest, deadline: float | None, *, stream: bool) -> tuple[Job, convert.ParsedRequest]:
        parsed, version = await target(self.hub_thread, self.resolver, parsed)
        worker = await self._worker(version)
        convert.check_supported(worker.model.capabilities, parsed.request)  # an unsupported field fails here, before any batch
        fmt = convert.resolve_format(parsed.format, worker.model.output_kind, parsed.model)
        job = Job(
            request=parsed.request,
            seed=parsed.seed,
            version=version,
            fmt=fmt,
            deadline=deadline,
            future=asyncio.get_running_loop().create_future(),
            events=asyncio.Queue() if stream else None,
        )
        worker.submit(job)
        return job, parsed

    async def model(self, version: Any) -> Any:
        """The loaded model of ``version`` (its worker's), loading it if no request has yet."""
        return (await self._worker(version)).model

    async def _worker(self, version: Any) -> ModelWorker:
        """The worker of the weights ``version`` names; versions with the same weights share one."""
        key = (version.artifact_digest, version.family)
        if key not in self.workers:
            loaded = await self.hub_thread.run(self.hub.load, version.ref)  # verifies the digest; cached by the hub
            if key not in self.workers:  # another request may have loaded it meanwhile
                self.workers[key] = ModelWorker(version.ref, loaded.model, self.options, self._log, self.metrics)
                self.metrics.loaded(len(self.workers))
        return self.workers[key]

    async def _log(self, outcomes: list[tuple[Job, JobResult | BaseException, float]]) -> dict[int, int]:
        """Queue each request of a finished batch for the generation log; returns id(job) -> generation id.

        No database work here (``hub.registry.genlog`` writes in the background), so no thread hop either.
        """
        ids = {}
        for job, outcome, duration in outcomes:
            status, error = _status(outcome)
            ids[id(job)] = self.hub.log_generation(job.version, job.request, job.seed, duration, status, error)
        return ids

    async def close(self) -> None:
        for worker in self.workers.values():
            await worker.close()
        self.workers.clear()


def call_deadline(context: aio.ServicerContext) -> float | None:
    """The call's gRPC deadline as a time.monotonic() instant (None: the client set none)."""
    remaining = context.time_remaining()
    return time.monotonic() + remaining if remaining is not None else None


@dataclass
class Observed:
    """What a generation RPC reports when it ends: the version it ran on and its wait in the queue."""

    ref: str
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    queue_s: float | None = None


@contextmanager
def observed(metrics: Any, asked: str, context: Any,
             unwrap: Callable[[BaseException], BaseException] = lambda exc: exc) -> Iterator[Observed]:
    """Count one generation RPC with its status code (OK, or the code its error maps to) and durations.

    ``metrics``: ``hub.metrics.Metrics`` or ``RayMetrics``; ``unwrap`` finds the domain error behind a wrapper.
    """
    request_id = _request_id(context)
    seen = Observed(asked, request_id)
    code = "OK"
    try:
        yield seen
    except (GeneratorExit, asyncio.CancelledError):  # the client went away mid-stream
        code = "CANCELLED"
        raise
    except BaseException as exc:
        code = status_for(unwrap(exc))[0].name
        raise
    finally:
        metrics.request_done(seen.ref, code, time.perf_counter() - seen.started, seen.queue_s, request_id)


def _request_id(context: Any) -> str:
    """The caller's ``x-request-id`` metadata (to follow a call across systems), else a new one."""
    for key, value in (context.invocation_metadata() or ()) if context is not None else ():
        if key == "x-request-id" and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return uuid.uuid4().hex


def _status(outcome: JobResult | BaseException) -> tuple[str, str | None]:
    if isinstance(outcome, JobResult):
        return "ok", None
    if isinstance(outcome, DeadlineExceeded):
        return "deadline", str(outcome)
    if isinstance(outcome, Cancelled):
        return "cancelled", str(outcome)
    return "error", f"{type(outcome).__name__}: {outcome}"


def _response(job: Job, result: JobResult) -> generation_pb2.GenerateResponse:
    return generation_pb2.GenerateResponse(
        images=result.images,
        model_version=convert.version_ref(job.version),
        seed=job.seed,
        generation_id=result.generation_id,
        duration_seconds=result.duration_s,
        queue_seconds=result.queue_s,
        batch_samples=result.batch_samples,
    )
