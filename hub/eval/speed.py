"""Sampling speed of a model: latency percentiles and images per second at batch 1 and at the largest batch.

Each batch size is timed with one warm-up call, then repeated until both ``min_repeats`` calls and
``budget_s`` seconds are done (or ``max_repeats`` calls). With few repeats p99 is close to the maximum
seen: the number of calls is recorded with every figure so a reader can judge.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from hub.errors import InvalidArgument
from hub.model import SampleRequest, per_sample_seeds

MAX_BATCH = 64  # the server's default max batch (rows per network pass)


@dataclass(frozen=True)
class SpeedResult:
    batch: int
    p50_ms: float  # median latency of one call of ``batch`` samples
    p99_ms: float
    images_per_s: float  # batch / mean latency
    repeats: int

    def details(self) -> dict[str, object]:
        return {"batch": self.batch, "repeats": self.repeats, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms}


def time_calls(call: Callable[[], object], *, min_repeats: int = 3, max_repeats: int = 50, budget_s: float = 5.0,
               warmup: int = 1) -> list[float]:
    """Seconds per call of ``call``, after ``warmup`` untimed calls."""
    if min_repeats < 1 or max_repeats < min_repeats:
        raise InvalidArgument("repeats", f"need 1 <= min_repeats <= max_repeats, got {min_repeats}, {max_repeats}")
    for _ in range(warmup):
        call()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() - started < budget_s):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times


def summarise(batch: int, seconds: list[float]) -> SpeedResult:
    ms = np.asarray(seconds) * 1000.0
    return SpeedResult(batch=batch, p50_ms=float(np.percentile(ms, 50)), p99_ms=float(np.percentile(ms, 99)),
                       images_per_s=float(batch / (ms.mean() / 1000.0)), repeats=len(seconds))


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
    for batch in batches:
        if batch < 1:
            raise InvalidArgument("batch", f"must be >= 1, got {batch}")
        counter = iter(range(1_000_000))

        def call() -> None:
            sample(make_request(per_sample_seeds(next(counter), batch)))

        with torch.no_grad():
            results.append(summarise(batch, time_calls(call, min_repeats=min_repeats, max_repeats=max_repeats,
                                                       budget_s=budget_s)))
    return results
