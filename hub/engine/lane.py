"""One model's queue and scheduling loop: an asyncio task that runs network passes on a thread of its own.

Stepped families (``hub.stepping.SteppedModel``): every pass takes the rows of the requests it selects,
whatever their sampler, steps or position. Selection, each pass: the active and waiting requests ordered
by remaining passes minus ``aging_passes_per_s`` x seconds since they last took part in a pass (shortest
remaining first, with aging so a long request is never starved), then taken in that order while the pass
has room (``max_batch`` rows; the first is always taken). A new request so joins at the next pass, and
leaves after its last one. When everything fits (the usual case) every request takes part in every pass.

Other families (one-pass GANs, or a request whose sampler has only a whole loop) run request by request:
the first request in the same order plus every waiting request with the same settings, up to
``max_batch`` samples, in one ``model.sample`` call.

There is no batching window: work starts as soon as the model is free; requests that arrive meanwhile
share the next pass. Cancelled and expired requests leave at the next pass boundary.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

from hub.engine.jobs import CANCELLED, DEADLINE, ERROR, OK, EngineObserver, EngineOptions, Job, Outcome
from hub.errors import Cancelled, DeadlineExceeded, ResourceExhausted
from hub.model import GenerativeModel, SampleRequest, StepEvent
from hub.stepping import SteppedModel, run_pass

log = logging.getLogger(__name__)
Finish = Callable[[list[Job]], Awaitable[None]]


def merge(jobs: list[Job]) -> SampleRequest:
    """One SampleRequest for a whole-call batch: seeds, labels and prompts concatenated in job order."""
    return SampleRequest.concat([j.request for j in jobs])


def _status(error: BaseException) -> str:
    return DEADLINE if isinstance(error, DeadlineExceeded) else CANCELLED if isinstance(error, Cancelled) else ERROR


class Lane:
    """The queue and loop of one loaded model (one set of weights)."""

    def __init__(self, name: str, model: GenerativeModel, options: EngineOptions, finish: Finish,
                 observer: EngineObserver) -> None:
        self.name, self.model, self.options = name, model, options
        self._finish_cb, self.observer = finish, observer
        self.stepped = isinstance(model, SteppedModel) and options.step_level
        self.pending: list[Job] = []  # admitted, no pass yet
        self.active: list[Job] = []  # stepped: begun; whole calls: sampling now
        self.passes_run = 0
        self.rows_run = 0
        self.last_used = time.monotonic()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"engine-{name}")
        self._task: asyncio.Task[None] | None = None
        self._recording: set[asyncio.Task[None]] = set()

    # -- admission ---------------------------------------------------------------------------

    def queued_cost(self) -> int:
        return sum(j.remaining_cost() for j in (*self.pending, *self.active))

    @property
    def idle(self) -> bool:
        return not self.pending and not self.active

    def admit(self, job: Job) -> None:
        """Queue ``job``, or raise ResourceExhausted when the model has too much admitted work."""
        assert job.cost is not None
        queued = self.queued_cost()
        if not self.idle and queued + job.cost.total > self.options.max_queued_cost:
            raise ResourceExhausted(
                f"the queue of {self.name} is full: {queued:,} cost units admitted and unfinished, this request adds "
                f"{job.cost.total:,}, the limit is {self.options.max_queued_cost:,}; retry in a few seconds with backoff, "
                "send a cheaper request, or start the server with a larger --max-queued-cost")
        self.pending.append(job)
        self.last_used = time.monotonic()
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"engine-{self.name}")
        self._report()

    async def close(self) -> None:
        """Stop the loop; whatever is queued or sampling ends CANCELLED."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._recording:
            await asyncio.gather(*self._recording, return_exceptions=True)
        left = [*self.pending, *self.active]
        self.pending, self.active = [], []
        for job in left:
            self._resolve(job, Outcome(CANCELLED, error=Cancelled("the server is shutting down; retry elsewhere")))
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- the loop ----------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            while self.idle:
                self._wake.clear()
                await self._wake.wait()
            try:
                await self._reap()
                whole = [j for j in self.pending if not self._steps(j)]
                if whole:
                    await self._run_whole(whole)
                elif self.pending or self.active:
                    await self._run_pass()
            except Exception:  # never let one bad pass kill the lane
                log.exception("engine lane %s: a pass failed unexpectedly", self.name)
                failed = [*self.pending, *self.active]
                self.pending, self.active = [], []
                await self._finish([(j, Outcome(ERROR, error=RuntimeError("the engine failed this request; see the server log")))
                                    for j in failed])
            self.last_used = time.monotonic()

    def _steps(self, job: Job) -> bool:
        if not self.stepped or job.trajectory is not None:
            return self.stepped
        try:
            return self.model.can_step(job.request)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - begin() will raise it again, for this job alone
            return True

    def _priority(self, job: Job, now: float) -> float:
        assert job.cost is not None
        remaining = job.trajectory.remaining if job.trajectory is not None else job.cost.passes
        return remaining - self.options.aging_passes_per_s * (now - (job.served_at or job.enqueued_at))

    async def _reap(self) -> None:
        """End the jobs whose caller left or whose deadline passed; their rows leave before the next pass."""
        now = time.monotonic()
        dead = [j for j in (*self.pending, *self.active) if j.dead(now)]
        if not dead:
            return
        self.pending = [j for j in self.pending if j not in dead]
        self.active = [j for j in self.active if j not in dead]
        outcomes = []
        for job in dead:
            traj = job.trajectory
            where = f" at step {traj.done} of {traj.total}" if traj is not None else " before sampling started"
            error = job.stop_reason(where)
            outcomes.append((job, Outcome(_status(error), error=error)))
        await self._finish(outcomes)

    # -- stepped: one network pass over the selected requests -----------------------------------

    def _select(self) -> list[Job]:
        now = time.monotonic()
        ranked = sorted((*self.active, *self.pending), key=lambda j: self._priority(j, now))
        chosen, rows = [], 0
        for job in ranked:
            job_rows = job.trajectory.rows if job.trajectory is not None else (job.cost.rows if job.cost else job.num_samples)
            if chosen and rows + job_rows > self.options.max_batch:
                continue
            chosen.append(job)
            rows += job_rows
        return chosen

    async def _run_pass(self) -> None:
        chosen = self._select()
        now = time.monotonic()
        for job in chosen:
            if job.started_at is None:
                job.started_at = now
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        failed, done, ran, rows = await loop.run_in_executor(self._executor, self._pass_in_thread, chosen)
        seconds = time.perf_counter() - started
        self.passes_run += 1
        self.rows_run += rows
        served = time.monotonic()
        for job in ran:
            job.passes += 1
            job.batch_samples = max(job.batch_samples, rows)
            job.served_at = served
            if job in self.pending:
                self.pending.remove(job)
                self.active.append(job)
        self.observer.on_pass(self.name, rows, len(ran), seconds)
        ended = [*failed, *done]
        if ended:
            self.active = [j for j in self.active if j not in ended]
            self.pending = [j for j in self.pending if j not in ended]
            await self._finish([(j, Outcome(_status(e), error=e)) for j, e in failed.items()] +
                               [(j, Outcome(OK, value=v)) for j, v in done.items()])

    def _pass_in_thread(self, chosen: list[Job]) -> tuple[dict[Job, BaseException], dict[Job, Any], list[Job], int]:
        model = self.model
        assert isinstance(model, SteppedModel)
        failed: dict[Job, BaseException] = {}
        ready: list[Job] = []
        for job in chosen:
            if job.trajectory is None:
                try:
                    job.trajectory = model.begin(job.request)  # checks the request, draws its x_T
                except Exception as exc:  # noqa: BLE001 - this request fails alone
                    failed[job] = exc
                    continue
            ready.append(job)
        rows = sum(j.trajectory.rows for j in ready)
        events = run_pass(model, [j.trajectory for j in ready]) if ready else []
        done: dict[Job, Any] = {}
        for job, event in zip(ready, events):
            if isinstance(event, BaseException):
                failed[job] = event
                continue
            self._progress(job, event)
            if job.trajectory.finished:
                try:
                    samples = job.trajectory.result().detach().to("cpu")
                    done[job] = job.encode(samples) if job.encode is not None else samples
                except Exception as exc:  # noqa: BLE001
                    failed[job] = exc
        return failed, done, ready, rows

    def _progress(self, job: Job, event: StepEvent) -> None:
        if job.on_progress is not None:
            try:
                job.on_progress(job, event)
            except Exception:  # a broken listener must not fail the pass
                log.exception("engine lane %s: a progress callback failed", self.name)

    # -- whole calls: request-level batching ------------------------------------------------------

    async def _run_whole(self, waiting: list[Job]) -> None:
        now = time.monotonic()
        head = min(waiting, key=lambda j: self._priority(j, now))
        key, batch, total = head.request.batch_key(), [head], head.num_samples
        for job in waiting:
            if job is not head and job.request.batch_key() == key and total + job.num_samples <= self.options.max_batch:
                batch.append(job)
                total += job.num_samples
        self.pending = [j for j in self.pending if j not in batch]
        self.active = batch
        outcomes = await self._whole_call(batch)
        failed = [o for _, o in outcomes if o.status == ERROR]
        if failed and len(batch) > 1:
            # One request's bad input must not fail the others: each runs alone (whole calls only; stepped
            # requests fail alone at their own pass).
            outcomes = []
            for job in batch:
                outcomes += await self._whole_call([job])
        self.active = []
        await self._finish(outcomes)

    async def _whole_call(self, jobs: list[Job]) -> list[tuple[Job, Outcome]]:
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        offsets, offset = [], 0
        for job in jobs:
            job.started_at = job.started_at or now
            offsets.append(offset)
            offset += job.num_samples
        started = time.perf_counter()
        reached: list[StepEvent] = []  # the last step taken, for the stop message
        try:
            values = await loop.run_in_executor(self._executor, self._whole_in_thread, jobs, offsets, reached)
        except Cancelled:  # every job was dead: our step callback stopped it
            where = f" at step {reached[0].step} of {reached[0].total}" if reached else " before sampling started"
            return [(j, Outcome(_status(j.stop_reason()), error=j.stop_reason(where))) for j in jobs]
        except Exception as exc:  # noqa: BLE001 - reported per job (domain errors keep their status)
            return [(j, Outcome(_status(exc), error=exc)) for j in jobs]
        finally:
            passes = reached[0].step if reached else 1  # network passes of the call (a one-pass family reports one step)
            self.passes_run += passes
            self.rows_run += offset * passes
            self.observer.on_pass(self.name, offset, len(jobs), time.perf_counter() - started, passes)
        outcomes = []
        for job, value in zip(jobs, values):
            job.passes, job.batch_samples = job.passes + 1, offset
            if job.dead():
                error = job.stop_reason(" before its batch finished")
                outcomes.append((job, Outcome(_status(error), error=error)))
            else:
                outcomes.append((job, Outcome(OK, value=value)))
        return outcomes

    def _whole_in_thread(self, jobs: list[Job], offsets: list[int], reached: list[StepEvent]) -> list[Any]:
        def on_step(event: StepEvent) -> bool:
            reached[:] = [event]
            now = time.monotonic()
            alive = False
            for job, start in zip(jobs, offsets):
                if job.dead(now):
                    continue
                alive = True
                preview = event.preview[start : start + job.num_samples] if event.preview is not None else None
                self._progress(job, StepEvent(event.step, event.total, preview))
            return alive  # False: report_step raises Cancelled and the loop stops

        samples = self.model.sample(merge(jobs), on_step)  # [N, C, H, W] or [N, 2]
        expected = sum(j.num_samples for j in jobs)
        if samples.shape[0] != expected:
            raise RuntimeError(f"model {self.name} returned {samples.shape[0]} samples for a request of {expected}")
        samples = samples.detach().to("cpu")
        parts = [samples[start : start + j.num_samples] for j, start in zip(jobs, offsets)]
        return [j.encode(p) if j.encode is not None else p for j, p in zip(jobs, parts)]

    # -- endings -------------------------------------------------------------------------------

    async def _finish(self, outcomes: list[tuple[Job, Outcome]]) -> None:
        """End these jobs: record each outcome (the engine's record callback: the generation log), then wake the callers."""
        now = time.monotonic()
        for job, outcome in outcomes:
            started = job.started_at or now
            outcome.queue_s = started - job.enqueued_at
            outcome.duration_s = now - started if job.started_at is not None else 0.0
            outcome.batch_samples, outcome.passes = job.batch_samples, job.passes
            job.outcome = outcome
            job.trajectory = None  # free its tensors now, not when the caller lets go
        # Recorded (the generation log) while the next passes run: a slow registry does not stall sampling.
        task = asyncio.get_running_loop().create_task(self._record(outcomes))
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)
        self._report()

    async def _record(self, outcomes: list[tuple[Job, Outcome]]) -> None:
        try:
            await self._finish_cb([job for job, _ in outcomes])
        except Exception:  # a registry hiccup must not lose the images
            log.exception("engine lane %s: could not record %d outcome(s)", self.name, len(outcomes))
        for job, outcome in outcomes:
            self._resolve(job, outcome)

    def _resolve(self, job: Job, outcome: Outcome) -> None:
        job.outcome = outcome
        if job.future is not None and not job.future.done():
            job.future.set_result(outcome)
        self.observer.on_outcome(job)

    def _report(self) -> None:
        self.observer.on_queue(self.name, self.queued_cost(), len(self.pending), len(self.active))
