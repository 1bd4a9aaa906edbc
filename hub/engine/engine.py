"""The engine: admits jobs into per-model lanes and hands back their outcomes. No transport in here."""

from __future__ import annotations

import asyncio
import time
from typing import Hashable

from hub.engine.jobs import EngineObserver, EngineOptions, Job, Outcome
from hub.engine.lane import Finish, Lane
from hub.errors import InvalidArgument


async def _no_record(jobs: list[Job]) -> None:
    return None


class Engine:
    """Schedules the network passes of every loaded model; one ``Lane`` (queue, loop, thread) per set of weights.

    The one entry point for every wire format (hub.v1 Generate/StreamGenerate, Ray replicas, other protocols):

        job = Job(request, model, lane=digest, name="ddpm-digits:1", on_progress=..., encode=...)
        outcome = await engine.run(job)      # or: future = engine.submit(job)

    ``submit`` raises InvalidArgument for a request over its cost limit and ResourceExhausted when the model's
    queue is full; everything after admission ends as an ``Outcome`` (ok, cancelled, deadline or error), first
    passed to ``record`` (the generation log: awaited before any caller wakes, so it can add ids), then to
    the caller. ``observer`` sees passes, queue changes and outcomes (metrics).
    """

    def __init__(self, options: EngineOptions | None = None, *, record: Finish | None = None,
                 observer: EngineObserver | None = None) -> None:
        self.options = options or EngineOptions()
        self.record = record or _no_record
        self.observer = observer or EngineObserver()
        self.lanes: dict[Hashable, Lane] = {}

    def submit(self, job: Job) -> asyncio.Future[Outcome]:
        """Admit ``job`` (on the running event loop); its future resolves with the outcome."""
        cost = job.model.sample_cost(job.request)  # a family's own checks may raise here, before queueing
        limit = job.max_cost if job.max_cost is not None else self.options.max_request_cost
        if cost.total > limit:
            raise InvalidArgument(
                "num_samples",
                f"the request costs {cost.describe()} (network passes x rows x values per row), over the limit of "
                f"{limit:,} for {job.name or 'this model'}; lower num_samples or steps (guidance doubles the rows), "
                "or raise the limit (server --max-request-cost, or the model's serve.max_request_cost tag)",
            )
        job.cost = cost
        if job.deadline is None and self.options.max_request_s is not None:
            job.deadline = time.monotonic() + self.options.max_request_s
        lane = self.lanes.get(job.lane)
        if lane is None:
            lane = self.lanes[job.lane] = Lane(job.name or str(job.lane), job.model, self.options, self.record, self.observer)
        job.future = asyncio.get_running_loop().create_future()
        lane.admit(job)
        return job.future

    async def run(self, job: Job) -> Outcome:
        """``submit`` and wait; if the waiting caller is cancelled, the job leaves at the next pass."""
        future = self.submit(job)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            job.cancel()
            raise

    async def drop(self, lane: Hashable) -> bool:
        """Close an idle lane (its model is being unloaded); False when it still has work."""
        found = self.lanes.get(lane)
        if found is None:
            return True
        if not found.idle:
            return False
        del self.lanes[lane]
        await found.close()
        return True

    async def close(self) -> None:
        lanes, self.lanes = list(self.lanes.values()), {}
        for lane in lanes:
            await lane.close()
