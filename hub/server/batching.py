"""Dynamic batching: one worker per loaded model, merging compatible requests.

Requests that would sample the same way (same sampler, steps, eta, guidance,
truncation, plugin parameters, preview cadence and kind of conditioning) and
arrive within ``window_s`` of the first are merged into one ``model.sample``
call of at most ``max_batch`` samples. Each request keeps its own per-sample
seeds (``hub.model.per_sample_seeds``), so its images do not depend on what it
was batched with; results are split back by offset.

Sampling runs in a thread of its own (torch releases the GIL). Its step
callback fans progress out to each streaming request and stops the loop (by
returning False) once every request in the batch is cancelled or past its
deadline, so a lone cancelled request stops within one step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Hashable

from hub.errors import Cancelled, DeadlineExceeded, GenhubError, ResourceExhausted
from hub.metrics import Metrics, StepTimer
from hub.model import GenerativeModel, SampleRequest, StepEvent
from hub.server.convert import image_messages, preview_messages
from hub.v1 import generation_pb2, types_pb2

log = logging.getLogger(__name__)


@dataclass
class BatchOptions:
    """How a worker batches; ``window_s == 0`` turns batching off (one request per sampling call)."""

    window_s: float = 0.005
    max_batch: int = 64  # samples per sampling call; a larger single request still runs, alone
    max_queue: int = 64  # requests waiting per model; one more is RESOURCE_EXHAUSTED

    def __post_init__(self) -> None:
        if self.window_s < 0:
            raise ValueError(f"batch window must be >= 0 seconds, got {self.window_s}")
        if self.max_batch < 1:
            raise ValueError(f"max batch must be >= 1 sample, got {self.max_batch}")
        if self.max_queue < 1:
            raise ValueError(f"max queue must be >= 1 request, got {self.max_queue}")


@dataclass
class JobResult:
    """What a finished request gets back (before the servicer adds the generation id)."""

    images: list[types_pb2.Image]
    duration_s: float  # the sampling call
    queue_s: float  # waiting before it started
    batch_samples: int  # samples in the sampling call (more than the request's when batched)
    generation_id: int = 0  # the registry's generation log id, filled in after logging


@dataclass(eq=False)
class Job:
    """One generation request in a model's queue."""

    request: SampleRequest
    seed: int
    version: Any  # VersionRecord the request resolved to
    fmt: int  # types_pb2.ImageFormat, already resolved for the model
    deadline: float | None  # time.monotonic() seconds; None: no deadline
    future: asyncio.Future[JobResult]
    events: asyncio.Queue[generation_pb2.Progress | None] | None = None  # streaming requests only
    enqueued_at: float = field(default_factory=time.monotonic)
    cancelled: bool = False  # read by the sampling thread; a plain bool is safe under the GIL
    started_at: float | None = None
    offset: int = 0  # first row of this request in its batch

    def __post_init__(self) -> None:
        self.future.add_done_callback(self._on_done)

    def _on_done(self, future: asyncio.Future[JobResult]) -> None:
        if future.cancelled():  # the RPC was cancelled, or its deadline passed
            self.cancelled = True

    def abandon(self) -> None:
        """The RPC is over (normally or not); if its result never came, stop working on it."""
        if not self.future.done():
            self.future.cancel()

    def expired(self, now: float | None = None) -> bool:
        return self.deadline is not None and (now if now is not None else time.monotonic()) >= self.deadline

    def dead(self, now: float | None = None) -> bool:
        return self.cancelled or self.expired(now)

    @property
    def num_samples(self) -> int:
        return self.request.num_samples

    @property
    def key(self) -> Hashable:
        """Requests with equal keys can share one sampling call (output formats may differ: encoding is per job)."""
        r = self.request
        conditioning = "class" if r.class_labels is not None else "prompt" if r.prompts is not None else "none"
        params = tuple((k, type(v).__name__, v) for k, v in sorted(r.params.items()))  # 1, 1.0 and True differ
        return (r.sampler, r.steps, r.eta, r.guidance_scale, r.truncation, params, r.preview_every, conditioning)

    def stop_reason(self) -> GenhubError:
        if self.expired():
            return DeadlineExceeded("the request's deadline passed before sampling finished; allow a longer deadline or fewer steps")
        return Cancelled("the client cancelled the request")


def merge(jobs: list[Job]) -> SampleRequest:
    """One SampleRequest for a batch: seeds, labels and prompts concatenated in job order."""
    first = jobs[0].request
    labels = [label for j in jobs for label in j.request.class_labels or []] if first.class_labels is not None else None
    prompts = [p for j in jobs for p in j.request.prompts or []] if first.prompts is not None else None
    return dataclasses.replace(
        first, seeds=[s for j in jobs for s in j.request.seeds], class_labels=labels, prompts=prompts, params=dict(first.params)
    )


# finished(jobs, outcomes): log each job's outcome; awaited before any job's future is resolved.
LogCallback = Callable[[list[tuple[Job, "JobResult | BaseException", float]]], Awaitable[dict[int, int]]]


class ModelWorker:
    """The queue and batching loop of one loaded model."""

    def __init__(self, name: str, model: GenerativeModel, options: BatchOptions, on_finished: LogCallback,
                 metrics: Metrics | None = None) -> None:
        self.name = name
        self.model = model
        self.options = options
        self.on_finished = on_finished
        self.metrics = metrics
        self.pending: deque[Job] = deque()
        self.running: list[Job] = []
        self.batches_run = 0
        self.steps_run = 0  # sampling steps taken, across batches (tests watch it stop on cancel)
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sample-{name}")
        self._task: asyncio.Task[None] | None = None

    # -- the queue --------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue a job, or raise ResourceExhausted when the queue is full."""
        live = sum(1 for j in self.pending if not j.dead())
        if live >= self.options.max_queue:
            raise ResourceExhausted(
                f"the queue of {self.name} is full ({self.options.max_queue} requests waiting); "
                "retry with backoff, or start the server with a larger --max-queue"
            )
        self.pending.append(job)
        self._report_queue()
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"worker-{self.name}")

    async def close(self) -> None:
        """Stop the loop and fail whatever is still queued (after the server's grace period)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for job in self.pending:
            job.abandon()
        self.pending.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- the loop ---------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            batch = await self._next_batch()
            try:
                await self._run_batch(batch)
            except Exception:  # never let one bad batch kill the worker
                log.exception("worker %s: batch failed unexpectedly", self.name)
                for job in batch:
                    job.abandon()

    async def _next_batch(self) -> list[Job]:
        while True:
            await self._drop_dead()
            if self.pending:
                break
            self._wake.clear()
            await self._wake.wait()
        head = self.pending.popleft()
        batch, total = [head], head.num_samples
        if self.options.window_s <= 0:  # batching off
            return batch
        loop = asyncio.get_running_loop()
        window_end = loop.time() + self.options.window_s
        while True:
            total = self._take_compatible(batch, total)
            remaining = window_end - loop.time()
            if total >= self.options.max_batch or remaining <= 0:
                return batch
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except asyncio.TimeoutError:
                self._take_compatible(batch, total)
                return batch

    def _take_compatible(self, batch: list[Job], total: int) -> int:
        key = batch[0].key
        kept: deque[Job] = deque()
        for job in self.pending:
            if job.key == key and not job.dead() and total + job.num_samples <= self.options.max_batch:
                batch.append(job)
                total += job.num_samples
            else:
                kept.append(job)
        self.pending = kept
        return total

    async def _drop_dead(self) -> None:
        """Finish queued jobs whose client left or whose deadline passed, without sampling them."""
        now = time.monotonic()
        dead = [j for j in self.pending if j.dead(now)]
        if dead:
            self.pending = deque(j for j in self.pending if not j.dead(now))
            await self._finish([(j, j.stop_reason(), 0.0) for j in dead])

    async def _run_batch(self, batch: list[Job]) -> None:
        now = time.monotonic()
        live = [j for j in batch if not j.dead(now)]
        if len(live) < len(batch):
            await self._finish([(j, j.stop_reason(), 0.0) for j in batch if j.dead(now)])
        if not live:
            return
        outcomes = await self._sample(live)
        failed = [o for o in outcomes if isinstance(o[1], BaseException) and not isinstance(o[1], Cancelled | DeadlineExceeded)]
        if failed and len(live) > 1:
            # One request's bad input must not fail its batch-mates: rerun each alone.
            outcomes = []
            for job in live:
                outcomes += [(job, job.stop_reason(), 0.0)] if job.dead() else await self._sample([job])
        await self._finish(outcomes)

    async def _sample(self, jobs: list[Job]) -> list[tuple[Job, JobResult | BaseException, float]]:
        loop = asyncio.get_running_loop()
        offset = 0
        for job in jobs:
            job.offset, offset = offset, offset + job.num_samples
            job.started_at = time.monotonic()
        self.running = jobs
        self.batches_run += 1
        self._report_queue()
        if self.metrics is not None:
            self.metrics.sampling_call(self.name, offset)
        started = time.perf_counter()
        try:
            images = await loop.run_in_executor(self._executor, self._sample_in_thread, loop, jobs)
        except Cancelled:
            duration = time.perf_counter() - started
            return [(j, j.stop_reason(), duration) for j in jobs]
        except Exception as exc:  # noqa: BLE001 - reported per job (domain errors keep their status)
            duration = time.perf_counter() - started
            return [(j, exc, duration) for j in jobs]
        finally:
            self.running = []
        duration = time.perf_counter() - started
        outcomes: list[tuple[Job, JobResult | BaseException, float]] = []
        for job, job_images in zip(jobs, images):
            if job.dead():
                outcomes.append((job, job.stop_reason(), duration))
            else:
                queue_s = (job.started_at or job.enqueued_at) - job.enqueued_at
                outcomes.append((job, JobResult(job_images, duration, queue_s, offset), duration))
        return outcomes

    def _sample_in_thread(self, loop: asyncio.AbstractEventLoop, jobs: list[Job]) -> list[list[types_pb2.Image]]:
        """Runs in the worker's thread: one sampling call, then PNG/tensor encoding per job."""

        step_timer = StepTimer(self.metrics, self.name, time.perf_counter)

        def on_step(event: StepEvent) -> bool:
            self.steps_run += 1
            step_timer()
            now = time.monotonic()
            alive = False
            for job in jobs:
                if job.dead(now):
                    continue
                alive = True
                if job.events is not None:
                    previews: list[types_pb2.Image] = []
                    if event.preview is not None:
                        previews = preview_messages(event.preview[job.offset : job.offset + job.num_samples], job.fmt)
                    progress = generation_pb2.Progress(step=event.step, total=event.total, previews=previews)
                    loop.call_soon_threadsafe(job.events.put_nowait, progress)
            return alive  # False: report_step raises Cancelled and the loop stops

        samples = self.model.sample(merge(jobs), on_step)  # [N, C, H, W] or [N, 2]
        expected = sum(j.num_samples for j in jobs)
        if samples.shape[0] != expected:
            raise RuntimeError(f"model {self.name} returned {samples.shape[0]} samples for a request of {expected}")
        samples = samples.detach().to("cpu")
        return [image_messages(samples[j.offset : j.offset + j.num_samples], j.fmt) for j in jobs]

    async def _finish(self, outcomes: list[tuple[Job, JobResult | BaseException, float]]) -> None:
        """Log every outcome, then hand results (or errors) to the waiting RPCs."""
        try:
            ids = await self.on_finished(outcomes)
        except Exception:  # a registry hiccup must not lose the images
            log.exception("worker %s: could not log %d generation(s)", self.name, len(outcomes))
            ids = {}
        for job, outcome, _ in outcomes:
            if isinstance(outcome, JobResult):
                outcome.generation_id = ids.get(id(job), 0)
            if not job.future.done():
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)
            if job.events is not None:
                job.events.put_nowait(None)  # end of progress; after every event the thread queued
        self._report_queue()

    def _report_queue(self) -> None:
        if self.metrics is not None:
            queued = sum(1 for j in self.pending if not j.dead())  # what admission (max_queue) counts
            self.metrics.queue(self.name, queued, queued + len(self.running))
