"""hub.engine without gRPC or Ray: step-level batching of a real (tiny) DDPM, and request-level batching.

Every test drives an ``Engine`` on its own event loop with in-process models: requests join and leave at
pass boundaries, get the images they get alone, end CANCELLED / DEADLINE mid-batch, and fail alone.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

import pytest
import torch

from hub.engine import CANCELLED, DEADLINE, ERROR, OK, Engine, EngineObserver, EngineOptions, Job, Latest
from hub import codecs
from hub.errors import InvalidArgument, ResourceExhausted
from hub.images import to_uint8
from hub.model import BuildContext, SampleRequest, StepEvent
from hub.sampling import SamplerRegistry

from genhub_ddpm.family import DDPMConfig, DDPMFamily, DDPMModel
from genhub_ddpm.samplers import DDIMSampler, DDPMSampler

ATOL = 1e-5


@pytest.fixture(scope="module")
def model() -> DDPMModel:
    torch.set_num_threads(1)
    context = BuildContext(samplers=SamplerRegistry({"ddpm": DDPMSampler(), "ddim": DDIMSampler()}))
    config = DDPMConfig(sample_shape=(1, 8, 8), base_channels=8, channel_mults=(1, 2), num_timesteps=100,
                        default_steps=8, num_classes=3)
    return DDPMFamily().build(config, context)


class Passes(EngineObserver):
    """Rows of every network pass, in order."""

    def __init__(self) -> None:
        self.rows: list[int] = []

    def on_pass(self, lane: str, rows: int, requests: int, seconds: float, passes: int = 1) -> None:
        self.rows.append(rows)


def run(body: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(body())


def job(model: Any, request: SampleRequest, **kwargs: Any) -> Job:
    return Job(request=request, model=model, lane="tiny-ddpm", name="tiny-ddpm:1", **kwargs)


async def wait_passes(j: Job, n: int) -> None:
    while j.passes < n:
        await asyncio.sleep(0.001)


MIXED = [
    SampleRequest.from_seed(1, 2, sampler="ddim", steps=12),
    SampleRequest.from_seed(2, 1, sampler="ddpm", steps=5),
    SampleRequest.from_seed(3, 3, sampler="ddim", steps=7, eta=0.5),
    SampleRequest.from_seed(4, 2, sampler="ddim", steps=9, class_labels=[0, 2], guidance_scale=3.0),
    SampleRequest.from_seed(5, 1, sampler="ddpm", steps=10, class_labels=[1]),
]


def test_requests_of_any_sampler_steps_eta_and_guidance_share_passes_and_match_running_alone(model: DDPMModel) -> None:
    alone = [model.sample(r) for r in MIXED]
    observer = Passes()

    async def body() -> tuple[list[Job], int]:
        engine = Engine(EngineOptions(), observer=observer)
        jobs = [job(model, r) for r in MIXED]
        first = jobs[0]
        engine.submit(first)
        await wait_passes(first, 2)  # the others join a trajectory already under way
        for j in jobs[1:]:
            engine.submit(j)
        joined_after = first.passes  # they join at the pass after the one running now
        await asyncio.gather(*(j.future for j in jobs))
        await engine.close()
        return jobs, joined_after

    jobs, joined_after = run(body)
    for j, expected in zip(jobs, alone):
        assert j.outcome.status == OK and j.outcome.passes == j.request.steps
        torch.testing.assert_close(j.outcome.value, expected, atol=ATOL, rtol=0)
    # guided rows count twice: 2 + 1 + 3 + 4 + 1 = 11 rows while all five are active
    assert max(observer.rows) == 11 and max(j.outcome.batch_samples for j in jobs) == 11
    # one pass per step of whichever request ends last: the others rode along (43 passes one after the other)
    assert len(observer.rows) in (max(12, joined_after + 1 + 10), max(12, joined_after + 10))


def test_a_request_joins_at_the_next_pass_and_leaves_after_its_last(model: DDPMModel) -> None:
    observer = Passes()

    async def body() -> tuple[Job, Job, int]:
        engine = Engine(EngineOptions(), observer=observer)
        long, short = job(model, SampleRequest.from_seed(1, 2, steps=40)), job(model, SampleRequest.from_seed(2, 1, steps=5))
        engine.submit(long)
        await wait_passes(long, 10)
        joined_at = len(observer.rows)
        engine.submit(short)
        await short.future
        assert not long.future.done()  # the short one left while the long one goes on
        await long.future
        await engine.close()
        return long, short, joined_at

    long, short, joined_at = run(body)
    rows = observer.rows
    assert len(rows) == 40 and long.outcome.passes == 40 and short.outcome.passes == 5
    three = [i for i, r in enumerate(rows) if r == 3]
    assert len(three) == 5 and three == list(range(three[0], three[0] + 5)) and three[0] >= joined_at  # 5 passes together
    assert all(r == 2 for i, r in enumerate(rows) if i not in three)
    torch.testing.assert_close(short.outcome.value, model.sample(short.request), atol=ATOL, rtol=0)
    torch.testing.assert_close(long.outcome.value, model.sample(long.request), atol=ATOL, rtol=0)


def test_cancellation_and_deadline_remove_rows_mid_batch_and_leave_the_rest(model: DDPMModel) -> None:
    observer = Passes()

    async def body() -> list[Job]:
        engine = Engine(EngineOptions(), observer=observer)
        kept = job(model, SampleRequest.from_seed(1, 1, steps=30))
        cancelled = job(model, SampleRequest.from_seed(2, 2, steps=30))
        expiring = job(model, SampleRequest.from_seed(3, 4, steps=30), deadline=time.monotonic() + 3600)
        for j in (kept, cancelled, expiring):
            engine.submit(j)
        await wait_passes(kept, 3)
        cancelled.cancel()
        expiring.deadline = time.monotonic()  # its deadline passes now
        at.append(kept.passes)  # passes finished so far (== len(observer.rows): both change in one loop turn)
        await asyncio.gather(kept.future, cancelled.future, expiring.future)
        await engine.close()
        return [kept, cancelled, expiring]

    at: list[int] = []
    kept, cancelled, expiring = run(body)
    assert cancelled.outcome.status == CANCELLED and "cancelled the request at step" in str(cancelled.outcome.error)
    assert expiring.outcome.status == DEADLINE and "deadline passed at step" in str(expiring.outcome.error)
    # At most the pass in flight when they were stopped still carried their rows; from the next one on, only the kept row.
    k = at[0]
    assert observer.rows[:k] == [7] * k and observer.rows[k + 1:] == [1] * (30 - k - 1)
    assert cancelled.outcome.passes in (k, k + 1) and expiring.outcome.passes in (k, k + 1)
    assert kept.outcome.status == OK
    torch.testing.assert_close(kept.outcome.value, model.sample(kept.request), atol=ATOL, rtol=0)


def test_a_lone_request_starts_its_first_pass_at_once_and_later_arrivals_join_the_next(model: DDPMModel) -> None:
    """No batching window: the lane hands a lone request to the network in the same event-loop turn it is scheduled in."""
    observer = Passes()

    async def body() -> tuple[Job, Job, bool, int]:
        engine = Engine(EngineOptions(), observer=observer)
        lone = job(model, SampleRequest.from_seed(1, 1, steps=6))
        engine.submit(lone)
        await asyncio.sleep(0)  # one turn of the loop, no wall-clock wait: a window would still be waiting here
        started = lone.started_at is not None and not observer.rows  # its first pass is running, none finished
        later = job(model, SampleRequest.from_seed(2, 2, steps=3))
        engine.submit(later)  # arrives while that pass runs
        passes_before = lone.passes
        await asyncio.gather(lone.future, later.future)
        await engine.close()
        return lone, later, started, passes_before

    lone, later, started, passes_before = run(body)
    assert started and passes_before == 0
    assert observer.rows == [1, 3, 3, 3, 1, 1]  # the later request joined at the second pass, left after its third
    assert lone.outcome.passes == 6 and later.outcome.passes == 3


class Rows(EngineObserver):
    """(rows, requests) of every network pass, in order."""

    def __init__(self) -> None:
        self.passes: list[tuple[int, int]] = []

    def on_pass(self, lane: str, rows: int, requests: int, seconds: float, passes: int = 1) -> None:
        self.passes.append((rows, requests))


def test_max_batch_caps_the_rows_of_every_pass_and_a_larger_lone_request_still_runs(model: DDPMModel) -> None:
    observer = Rows()
    requests = [SampleRequest.from_seed(1, 3, steps=6), SampleRequest.from_seed(2, 2, sampler="ddpm", steps=3),
                SampleRequest.from_seed(3, 1, steps=4), SampleRequest.from_seed(4, 6, steps=2)]  # the last: 6 rows > 4

    async def body() -> list[Job]:
        engine = Engine(EngineOptions(max_batch=4), observer=observer)
        jobs = [job(model, r) for r in requests]
        for j in jobs:
            engine.submit(j)
        await asyncio.gather(*(j.future for j in jobs))
        await engine.close()
        return jobs

    jobs = run(body)
    assert all(rows <= 4 or (rows, n) == (6, 1) for rows, n in observer.passes), observer.passes
    assert [p for p in observer.passes if p[0] > 4] == [(6, 1), (6, 1)]  # the 6-row request ran alone, twice
    assert sum(rows for rows, _ in observer.passes) == 3 * 6 + 2 * 3 + 1 * 4 + 6 * 2  # every row-pass once, none repeated
    assert any(n > 1 for _, n in observer.passes)  # requests that fit together shared passes
    for j in jobs:
        assert j.outcome.status == OK and j.outcome.passes == j.request.steps
        torch.testing.assert_close(j.outcome.value, model.sample(j.request), atol=ATOL, rtol=0)
    assert max(j.outcome.batch_samples for j in jobs[:3]) <= 4


def png(samples: torch.Tensor) -> list[bytes]:
    """The servers' PNG encoding of [N, C, H, W] samples (hub.v1 images, one PNG per sample)."""
    return [image.png for image in codecs.image_messages(samples, codecs.FORMAT_PNG)]


def test_the_same_seed_gives_the_same_png_bytes_alone_and_inside_a_mixed_batch(model: DDPMModel) -> None:
    async def engine_run(requests: list[SampleRequest], join_late: bool) -> list[Any]:
        engine = Engine(EngineOptions())
        jobs = [job(model, r, encode=png) for r in requests]
        engine.submit(jobs[0])
        if join_late:
            await wait_passes(jobs[0], 2)  # the others join a trajectory under way, at different steps from it
        for j in jobs[1:]:
            engine.submit(j)
        await asyncio.gather(*(j.future for j in jobs))
        await engine.close()
        assert all(j.outcome.status == OK for j in jobs)
        return [j.outcome.value for j in jobs]

    alone = [run(lambda r=r: engine_run([r], False))[0] for r in MIXED]
    mixed = run(lambda: engine_run(MIXED, True))
    assert mixed == alone  # bytes, image by image
    pixels = to_uint8(torch.cat([model.sample(r) for r in MIXED]))
    assert len({p for images in alone for p in images}) == sum(r.num_samples for r in MIXED)  # every image its own
    assert ((pixels > 0) & (pixels < 255)).mean() > 0.2  # not saturated images: rounding could differ if values did


class Poisoned(DDPMModel):
    """A DDPM whose requests with first seed 666 put an out-of-range class into the network pass."""

    def begin(self, request: SampleRequest) -> Any:
        trajectory = super().begin(request)
        if request.seeds[0] == 666:
            trajectory.cond = torch.full((request.num_samples,), 99, dtype=torch.long)
        return trajectory


def test_a_failing_request_fails_alone_and_its_batch_mates_are_not_rerun(model: DDPMModel) -> None:
    poisoned = Poisoned(model.config, model.context)
    poisoned.ema.load_state_dict(model.ema.state_dict())
    observer = Passes()

    async def body() -> list[Job]:
        engine = Engine(EngineOptions(), observer=observer)
        good = job(poisoned, SampleRequest.from_seed(1, 2, steps=6))
        bad_input = job(poisoned, SampleRequest.from_seed(2, 1, steps=6, class_labels=[7]))  # refused by begin
        bad_pass = job(poisoned, SampleRequest(seeds=[666], steps=6))  # fails inside the batched network pass
        for j in (good, bad_input, bad_pass):
            engine.submit(j)
        await asyncio.gather(*(j.future for j in (good, bad_input, bad_pass)))
        await engine.close()
        return [good, bad_input, bad_pass]

    good, bad_input, bad_pass = run(body)
    assert bad_input.outcome.status == ERROR and isinstance(bad_input.outcome.error, InvalidArgument)
    assert "class_labels" in str(bad_input.outcome.error)
    assert bad_pass.outcome.status == ERROR and isinstance(bad_pass.outcome.error, IndexError)
    assert good.outcome.status == OK and good.outcome.passes == 6 and len(observer.rows) == 6  # no pass run twice
    torch.testing.assert_close(good.outcome.value, model.sample(good.request), atol=ATOL, rtol=0)


def test_progress_reaches_each_request_with_its_own_previews(model: DDPMModel) -> None:
    seen: dict[int, list[StepEvent]] = {1: [], 2: []}

    async def body() -> None:
        engine = Engine(EngineOptions())
        jobs = [job(model, SampleRequest.from_seed(s, s, steps=4, preview_every=2),
                    on_progress=lambda j, e, s=s: seen[s].append(e)) for s in (1, 2)]
        for j in jobs:
            engine.submit(j)
        await asyncio.gather(*(j.future for j in jobs))
        await engine.close()

    run(body)
    for s in (1, 2):
        assert [e.step for e in seen[s]] == [1, 2, 3, 4]
        assert [e.preview.shape[0] if e.preview is not None else 0 for e in seen[s]] == [0, s, 0, s]


def test_request_level_families_batch_equal_settings_through_the_same_engine() -> None:
    from tests.server.tiny_family import TinyConfig, TinyModel

    tiny = TinyModel(TinyConfig())
    requests = [SampleRequest.from_seed(s, 2, steps=3) for s in (1, 2)] + [SampleRequest.from_seed(3, 1, steps=4)]
    observer = Passes()

    async def body() -> list[Job]:
        engine = Engine(EngineOptions(), observer=observer)
        blocker = job(tiny, SampleRequest.from_seed(9, 1, steps=2, params={"step_sleep_s": 0.05}))
        engine.submit(blocker)
        while not engine.lanes["tiny-ddpm"].active:
            await asyncio.sleep(0.001)
        jobs = [job(tiny, r) for r in requests]  # queued behind the blocker: the two 3-step ones share one call
        for j in jobs:
            engine.submit(j)
        await asyncio.gather(blocker.future, *(j.future for j in jobs))
        await engine.close()
        return jobs

    jobs = run(body)
    assert observer.rows == [1, 4, 1] and [j.outcome.batch_samples for j in jobs] == [4, 4, 1]
    for j in jobs:
        torch.testing.assert_close(j.outcome.value, tiny.sample(j.request), atol=ATOL, rtol=0)


def test_cost_limits_refuse_a_costly_request_and_a_full_queue(model: DDPMModel) -> None:
    async def body() -> None:
        engine = Engine(EngineOptions(max_request_cost=64 * 8 * 10, max_queued_cost=64 * 8 * 12))
        with pytest.raises(InvalidArgument, match=r"num_samples: the request costs 10 passes x 16 rows x 64 values = 10,240 .*"
                                                  r"over the limit of 5,120 for tiny-ddpm:1"):
            engine.submit(job(model, SampleRequest.from_seed(1, 8, steps=10, class_labels=[0] * 8, guidance_scale=2.0)))
        first = job(model, SampleRequest.from_seed(1, 8, steps=10))  # 5,120: fits, and the lane was empty
        engine.submit(first)
        with pytest.raises(ResourceExhausted, match=r"queue of tiny-ddpm:1 is full.*limit is 6,144; retry"):
            engine.submit(job(model, SampleRequest.from_seed(2, 4, steps=10)))  # 5,120 + 2,560 > 6,144
        engine.submit(second := job(model, SampleRequest.from_seed(3, 1, steps=10)))  # + 640 fits
        await asyncio.gather(first.future, second.future)
        assert first.outcome.ok and second.outcome.ok
        await engine.close()

    run(body)


class SlowFirstPass(EngineObserver):
    """Holds the event loop ``seconds`` after the first pass: whatever the machine's speed, that much time has gone
    by before the lane looks at its requests again."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.held = seconds, False

    def on_pass(self, lane: str, rows: int, requests: int, seconds: float, passes: int = 1) -> None:
        if not self.held:
            self.held = True
            time.sleep(self.seconds)


def test_a_request_without_deadline_gets_the_engines_max_request_time(model: DDPMModel) -> None:
    async def body() -> Job:
        # Not "100 passes take more than 10 ms": on a fast enough machine they would not.
        engine = Engine(EngineOptions(max_request_s=0.01), observer=SlowFirstPass(0.02))
        slow = job(model, SampleRequest.from_seed(1, 1, sampler="ddpm", steps=100))
        engine.submit(slow)
        await slow.future
        await engine.close()
        return slow

    slow = run(body)
    assert slow.outcome.status == DEADLINE and "deadline passed" in str(slow.outcome.error)
    assert slow.outcome.passes <= 1  # stopped at the first pass boundary after the 10 ms (0 on a machine slow to start)


def test_latest_keeps_only_the_newest_undelivered_event() -> None:
    async def body() -> list[Any]:
        box: Latest[int] = Latest()
        for i in range(1000):
            box.put(i)
        first = await box.get()
        box.put(1000)
        box.close()
        return [first, await box.get(), await box.get(), box.coalesced]

    assert run(body) == [999, 1000, None, 999]
