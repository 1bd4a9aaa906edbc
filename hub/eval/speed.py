"""Sampling speed of a model: latency percentiles and images per second at batch 1 and at the largest batch.

Each batch size is timed with one warm-up call, then repeated until both ``min_repeats`` calls and
``budget_s`` seconds are done (or ``max_repeats`` calls). With few repeats p99 is close to the maximum
seen: the number of calls is recorded with every figure so a reader can judge.

The clock: with one torch thread, the process's CPU time per call (``time.process_time``), so that other
tenants of a shared machine do not distort the figures (at a load of 20 on 2 cores, wall-clock latency of the
same call came out 50x longer); without contention the two agree. With several threads CPU time would add
the threads up, so wall-clock time is used. ``details.clock`` says which.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from hub.errors import InvalidArgument
from hub.model import SampleRequest, per_sample_seeds

MAX_BATCH = 64  # the server's largest request (hub.server.convert.MAX_NUM_SAMPLES) and default max batch


@dataclass(frozen=True)
class SpeedResult:
    batch: int
    p50_ms: float  # median latency of one call of ``batch`` samples
    p99_ms: float
    images_per_s: float  # batch / mean latency
    repeats: int
    clock: str = "wall"  # "wall" or "process_cpu"

    def details(self) -> dict[str, object]:
        return {"batch": self.batch, "repeats": self.repeats, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms,
                "clock": self.clock}


def time_calls(call: Callable[[], object], *, min_repeats: int = 3, max_repeats: int = 50, budget_s: float = 5.0,
               warmup: int = 1, clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Seconds (of ``clock``) per call of ``call``, after ``warmup`` untimed calls; the budget is wall-clock time."""
    if min_repeats < 1 or max_repeats < min_repeats:
        raise InvalidArgument("repeats", f"need 1 <= min_repeats <= max_repeats, got {min_repeats}, {max_repeats}")
    for _ in range(warmup):
        call()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() - started < budget_s):
        t0 = clock()
        call()
        times.append(clock() - t0)
    return times


def summarise(batch: int, seconds: list[float], clock: str = "wall") -> SpeedResult:
    ms = np.maximum(np.asarray(seconds) * 1000.0, 1e-3)  # a CPU clock can tick coarser than a tiny call
    return SpeedResult(batch=batch, p50_ms=float(np.percentile(ms, 50)), p99_ms=float(np.percentile(ms, 99)),
                       images_per_s=float(batch / (ms.mean() / 1000.0)), repeats=len(seconds), clock=clock)


def measure_speed(
    sample: Callable[[SampleRequest], torch.Tensor],
    make_request: Callable[[list[int]], SampleRequest],
    batches: tuple[int, ...] = (1, MAX_BATCH),
    *,
    budget_s: float = 5.0,
    min_repeats: int = 3,
    max_repeats: int = 50,
) -> list[SpeedResult]:
    """Time ``sample(make_request(seeds))`` for each batch size; the seeds change every call."""
    results = []
    single = torch.get_num_threads() == 1
    clock, clock_name = (time.process_time, "process_cpu") if single else (time.perf_counter, "wall")
    for batch in batches:
        if batch < 1:
            raise InvalidArgument("batch", f"must be >= 1, got {batch}")
        counter = iter(range(1_000_000))

        def call() -> None:
            sample(make_request(per_sample_seeds(next(counter), batch)))

        with torch.no_grad():
            results.append(summarise(batch, time_calls(call, min_repeats=min_repeats, max_repeats=max_repeats,
                                                       budget_s=budget_s, clock=clock), clock_name))
    return results
