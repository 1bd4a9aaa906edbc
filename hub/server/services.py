"""The gRPC servicers of package hub.v1: RegistryService and GenerationService.

Handlers raise ``hub.errors`` domain errors; ``hub.server.status`` turns them
into status codes. Registry and model-loading calls run on one dedicated thread,
so the event loop never blocks on SQLite and the database sees one writer.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator

from grpc import aio

from hub.cards import render_card
from hub.core import Hub, model_key
from hub.engine import Engine, EngineOptions, Job, Latest
from hub.engine.hub_thread import HubThread
from hub.engine.models import ModelCache, load_through_cache
from hub import metrics as series
from hub.errors import InvalidArgument
from hub.model import StepEvent
from hub.registry.refs import parse_ref
from hub.server import convert
from hub.v1 import generation_pb2, generation_pb2_grpc, registry_pb2, registry_pb2_grpc

COST_TAG = "serve.max_request_cost="


class Resolver:
    """Model reference -> VersionRecord, cached so the hot path skips the database.

    ``name:3`` never changes meaning, so it is cached for good; ``name`` and
    ``name@alias`` for ``alias_ttl_s``, since another process (`genhub alias`)
    may move an alias. SetAlias through this server clears the cache at once; on
    PostgreSQL so does an alias moved anywhere (LISTEN/NOTIFY, ``Registry.watch_aliases``).
    """

    MAX_ENTRIES = 4096

    def __init__(self, hub_thread: HubThread, alias_ttl_s: float = 1.0) -> None:
        self.hub_thread = hub_thread
        self.alias_ttl_s = alias_ttl_s
        self._cache: dict[str, tuple[Any, float | None]] = {}  # ref -> (version, expires at; None: never)
        self._epoch = 0  # bumped by every invalidation: a lookup that straddles one is not cached
        self._watcher = hub_thread.hub.registry.watch_aliases(lambda _model: self.invalidate())

    async def resolve(self, ref: str) -> Any:
        now = time.monotonic()
        hit = self._cache.get(ref)
        if hit is not None and (hit[1] is None or now < hit[1]):
            return hit[0]
        epoch = self._epoch
        version = await self.hub_thread.run(self.hub_thread.hub.resolve, ref)
        if len(self._cache) >= self.MAX_ENTRIES:
            self._cache.clear()
        if epoch == self._epoch:
            self._cache[ref] = (version, None if parse_ref(ref).version is not None else now + self.alias_ttl_s)
        return version

    def invalidate(self) -> None:
        """Forget every alias resolution (called from the watcher's thread too)."""
        self._epoch += 1
        self._cache = {ref: hit for ref, hit in list(self._cache.items()) if hit[1] is None}

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()


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


@dataclass
class Call:
    """What a generation RPC keeps with its engine job: the version, the seed, the image format, the log id."""

    version: Any  # VersionRecord
    seed: int
    fmt: int  # types_pb2.ImageFormat, resolved for the model
    generation_id: int = 0


def max_request_cost(version: Any) -> int | None:
    """The model's own request cost limit (tag ``serve.max_request_cost=N``); None: the server's."""
    for tag in version.tags:
        if tag.startswith(COST_TAG):
            value = tag[len(COST_TAG):]
            try:
                return int(float(value))
            except ValueError:
                raise InvalidArgument("tags", f"{version.ref} has tag {tag!r}; {COST_TAG}N needs a number N") from None
    return None


def engine_job(parsed: convert.ParsedRequest, version: Any, model: Any, deadline: float | None,
               events: Latest[generation_pb2.Progress] | None) -> Job:
    """The engine job of a hub.v1 generation request: images encoded as the request asked, progress to ``events``."""
    fmt = convert.resolve_format(parsed.format, model.output_kind, parsed.model)
    on_progress = None
    if events is not None:
        loop = asyncio.get_running_loop()

        def on_progress(job: Job, event: StepEvent) -> None:  # on the sampling thread: encode previews there
            previews = convert.preview_messages(event.preview, fmt) if event.preview is not None else []
            loop.call_soon_threadsafe(events.put, generation_pb2.Progress(step=event.step, total=event.total, previews=previews))

    return Job(request=parsed.request, model=model, lane=model_key(version), name=version.ref,
               deadline=deadline, max_cost=max_request_cost(version), on_progress=on_progress,
               encode=lambda samples: convert.image_messages(samples, fmt), context=Call(version, parsed.seed, fmt))


async def record_generations(hub: Hub, jobs: list[Job]) -> None:
    """The engine's record callback: queue each finished job's generation log record, keeping its id.

    On the event loop: ``Hub.log_generation`` only queues the record for the log's background writer (ids come
    from a block reserved ahead), so no database work waits here and none is in the sampler's way.
    """
    for job in jobs:
        call, outcome = job.context, job.outcome
        assert outcome is not None
        call.generation_id = hub.log_generation(call.version, job.request, call.seed, outcome.duration_s, outcome.status,
                                                outcome.log_error())


def generate_response(job: Job) -> generation_pb2.GenerateResponse:
    """The response of a job that ended OK (raises the domain error of one that did not)."""
    outcome = job.outcome
    assert outcome is not None
    if not outcome.ok:
        assert outcome.error is not None
        raise outcome.error
    call = job.context
    return generation_pb2.GenerateResponse(
        images=outcome.value, model_version=convert.version_ref(call.version), seed=call.seed,
        generation_id=call.generation_id, duration_seconds=outcome.duration_s, queue_seconds=outcome.queue_s,
        batch_samples=outcome.batch_samples,
    )


class GenerationService(generation_pb2_grpc.GenerationServiceServicer):
    """hub.v1 generation over the engine; every request is logged in the registry, and counted in ``metrics``."""

    def __init__(self, hub_thread: HubThread, resolver: Resolver, options: EngineOptions, models: ModelCache | None = None,
                 metrics: series.Sink | None = None) -> None:
        self.hub_thread = hub_thread
        self.hub = hub_thread.hub
        self.resolver = resolver
        self.metrics = metrics
        self.engine = Engine(options, record=lambda jobs: record_generations(hub_thread.hub, jobs),
                             observer=series.MetricsObserver(metrics) if metrics is not None else None)
        self.models = models if models is not None else ModelCache()

    async def Generate(self, request: generation_pb2.GenerateRequest, context: aio.ServicerContext) -> generation_pb2.GenerateResponse:
        with series.request(self.metrics, request_id(context)) as timed:
            return await self.generate(convert.parse_generate(request), call_deadline(context), timed)

    async def generate(self, parsed: convert.ParsedRequest, deadline: float | None,
                       timed: series.Request) -> generation_pb2.GenerateResponse:
        """Run one validated request to its result: the path every unary wire format (hub.v1, the open inference
        protocol) takes, so admission, batching, deadlines, cancellation, the generation log and metrics are the same.
        ``timed``: the caller's ``hub.metrics.request``, opened before it parsed the request (a refused parse counts)."""
        job, parsed = await self._submit(parsed, deadline, events=None, timed=timed)
        assert job.future is not None
        try:
            await asyncio.shield(job.future)
        finally:
            job.cancel()  # no-op once finished; otherwise the RPC ended early: stop at the next pass
        timed.queue_s = job.outcome.queue_s if job.outcome is not None else None
        return convert.annotate_response(generate_response(job), parsed)

    async def StreamGenerate(
        self, request: generation_pb2.StreamGenerateRequest, context: aio.ServicerContext
    ) -> AsyncIterator[generation_pb2.StreamGenerateResponse]:
        with series.request(self.metrics, request_id(context)) as timed:
            parsed = convert.parse_generate(request.request, request.preview_every)
            events: Latest[generation_pb2.Progress] = Latest()
            job, parsed = await self._submit(parsed, call_deadline(context), events=events, timed=timed)
            assert job.future is not None
            job.future.add_done_callback(lambda _: events.close())
            try:
                while (progress := await events.get()) is not None:
                    yield generation_pb2.StreamGenerateResponse(progress=progress)
                await job.future
            finally:
                job.cancel()  # a client that went away stops its sampling at the next pass
            timed.queue_s = job.outcome.queue_s if job.outcome is not None else None
            yield generation_pb2.StreamGenerateResponse(result=convert.annotate_response(generate_response(job), parsed))

    async def _submit(self, parsed: convert.ParsedRequest, deadline: float | None, *,
                      events: Latest[generation_pb2.Progress] | None,
                      timed: series.Request) -> tuple[Job, convert.ParsedRequest]:
        parsed, version = await target(self.hub_thread, self.resolver, parsed)
        timed.resolved(version)
        model = await self.model(version)
        convert.check_supported(model.capabilities, parsed.request)  # an unsupported field fails here, before queueing
        job = engine_job(parsed, version, model, deadline, events)
        self.engine.submit(job)
        return job, parsed

    async def model(self, version: Any) -> Any:
        """The loaded model of ``version``'s weights, loading it if no request has yet; loading one may unload the
        least recently used idle ones (``--max-loaded-models``, ``--max-loaded-bytes``)."""
        return await load_through_cache(self.models, self.engine, self.hub_thread, version,
                                        loaded=self.metrics.loaded if self.metrics is not None else None)

    async def close(self) -> None:
        await self.engine.close()


def request_id(context: aio.ServicerContext) -> str:
    """The caller's ``x-request-id`` metadata ("" when it sent none: the access log makes one up)."""
    return series.caller_request_id(context.invocation_metadata())


def call_deadline(context: aio.ServicerContext) -> float | None:
    """The call's gRPC deadline as a time.monotonic() instant (None: the client set none)."""
    remaining = context.time_remaining()
    return time.monotonic() + remaining if remaining is not None else None
