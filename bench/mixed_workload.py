"""Mixed workload, request-level against step-level batching in one run (section (d) of bench/serving.py).

    python bench/mixed_workload.py               # a fresh small DDPM in a temp registry, 60 s of arrivals per server
    python bench/mixed_workload.py --quick       # a smoke run

Poisson arrivals at ``--rate`` requests/s for ``--duration`` seconds; each request draws its steps from
``--step-classes`` (10, 50, 250) and 1-4 samples, streams, and records its latency and its time to the first
progress event. The same arrival schedules (fixed seeds; ``--rounds`` of them, each ``duration / rounds`` long)
go in alternating order (ABBA...) to a server with ``step_level=False`` (requests with equal settings merged into
one sampling call, run to the end) and one with step-level batching, each schedule run to its last request.
Reported: images/s and network passes/s (read from the server's engine), the mean time of one network pass,
p50/p99 latency per step class, p50/p99 time to first progress (also in passes). Both servers run in this process
(``BackgroundServer``) so their engines' pass counts and times can be read.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from grpc import aio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub import auth  # noqa: E402
from hub.client import build_request  # noqa: E402
from hub.core import Hub  # noqa: E402
from hub.engine import EngineObserver  # noqa: E402
from hub.server.app import BackgroundServer  # noqa: E402
from hub.v1 import generation_pb2, generation_pb2_grpc  # noqa: E402


def schedule(rate: float, duration: float, classes: list[int], seed: int = 0) -> list[tuple[float, int, int]]:
    """(send at, steps, samples) of every request: Poisson arrivals, uniform step class and 1-4 samples."""
    rng = random.Random(seed)
    out, t = [], rng.expovariate(rate)
    while t < duration:
        out.append((t, rng.choice(classes), rng.randint(1, 4)))
        t += rng.expovariate(rate)
    return out


async def _drive(address: str, ref: str, plan: list[tuple[float, int, int]], sampler: str) -> list[dict[str, Any]]:
    async with aio.insecure_channel(address) as channel:
        stub = generation_pb2_grpc.GenerationServiceStub(channel)
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def one(i: int, at: float, steps: int, samples: int) -> dict[str, Any]:
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            sent = loop.time()  # time.monotonic(), as the engine's clock: the server runs in this process
            first, queued = None, 0.0
            request = generation_pb2.StreamGenerateRequest(
                request=build_request(ref, seed=i, num_samples=samples, sampler=sampler, steps=steps, format="tensor"))
            async for message in stub.StreamGenerate(request, timeout=3600, metadata=DRIVE_METADATA or None):
                if message.HasField("progress") and first is None:
                    first = loop.time() - sent
                if message.HasField("result"):
                    queued = message.result.queue_seconds  # admitted by the engine -> its first pass began
            return {"steps": steps, "samples": samples, "latency": loop.time() - sent, "first": first or 0.0,
                    "queued": queued, "done": loop.time() - start, "seed": i, "sent": sent}

        return await asyncio.gather(*(one(i, *p) for i, p in enumerate(plan)))


DRIVE_METADATA: list[tuple[str, str]] = []  # the generate token of the server under test


class PassTimes(EngineObserver):
    """The server's own observer, plus the seconds of every sampling call (a network pass, or a whole request-level
    call of several passes) with its end time and rows, and each finished job's admission and first-pass times."""

    def __init__(self, inner: EngineObserver) -> None:
        self.inner, self.calls, self.ends, self.rows = inner, [], [], []
        self.jobs: dict[int, tuple[float, float | None]] = {}  # seed -> (admitted, first pass began), monotonic

    def on_pass(self, lane: str, rows: int, requests: int, seconds: float, passes: int = 1) -> None:
        self.calls.append(seconds)
        self.ends.append(time.monotonic())
        self.rows.append(rows)
        self.inner.on_pass(lane, rows, requests, seconds, passes)

    def first_pass(self, began: float) -> tuple[float, float]:
        """(seconds, rows) of the pass that began at ``began`` (the first to end after it)."""
        i = bisect.bisect_left(self.ends, began)
        return (self.calls[i], self.rows[i]) if i < len(self.ends) else (float("nan"), 0)

    def on_queue(self, lane: str, queued_cost: int, pending: int, active: int) -> None:
        self.inner.on_queue(lane, queued_cost, pending, active)

    def on_outcome(self, job: Any) -> None:
        self.jobs[job.context.seed] = (job.enqueued_at, job.started_at)
        self.inner.on_outcome(job)


def measure(hub: Hub, ref: str, plans: list[list[tuple[float, int, int]]], sampler: str) -> dict[str, dict[str, Any]]:
    """Each plan against a request-level and a step-level server, alternating which goes first (ABBA...), each
    plan run to its last request: per server its records, seconds, network passes, busy seconds and load averages."""
    with contextlib.ExitStack() as stack:
        servers = {label: stack.enter_context(BackgroundServer(hub, "127.0.0.1:0", step_level=step_level))
                   for label, step_level in (("request-level", False), ("step-level", True))}
        timings = {}
        for label, server in servers.items():
            engine = server.handle.engine
            engine.observer = timings[label] = PassTimes(engine.observer)  # before the first request: lanes take it
        DRIVE_METADATA[:] = auth.bearer_metadata(auth.client_token(auth.GENERATE, hub.home)) or []
        totals = {label: {"records": [], "elapsed": 0.0, "passes": 0, "busy": 0.0, "loads": []} for label in servers}
        for label, server in servers.items():  # load the model, build kernels
            asyncio.run(_drive(server.address, ref, [(0.0, min(s for p in plans for _, s, _ in p), 1)], sampler))
        for round_, plan in enumerate(plans):
            for label in (list(servers) if round_ % 2 == 0 else list(servers)[::-1]):
                server, timing, total = servers[label], timings[label], totals[label]
                lanes = server.handle.engine.lanes
                before, calls_before = server.run(lambda: sum(lane.passes_run for lane in lanes.values())), len(timing.calls)
                total["loads"].append(os.getloadavg()[0])
                started = time.perf_counter()
                timing.jobs.clear()
                records = asyncio.run(_drive(server.address, ref, plan, sampler))
                for record in records:  # where its time to first progress went (server and client share a clock)
                    admitted, began = timing.jobs.get(record["seed"], (float("nan"), None))
                    seconds, rows = timing.first_pass(began) if began is not None else (float("nan"), 0)
                    record.update(admit=admitted - record["sent"], wait=(began or admitted) - admitted, pass_s=seconds,
                                  pass_rows=rows, deliver=record["sent"] + record["first"] - (began or admitted) - seconds)
                total["records"] += records
                total["elapsed"] += time.perf_counter() - started
                total["passes"] += server.run(lambda: sum(lane.passes_run for lane in lanes.values())) - before
                total["busy"] += sum(timing.calls[calls_before:])
    return totals


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def render(results: dict[str, dict[str, Any]], classes: list[int], rate: float, duration: float) -> list[str]:
    lines = [f"(d) mixed workload: Poisson arrivals {rate:g}/s for {duration:g} s, steps from {classes}, 1-4 samples, streamed",
             "    batching        images/s  passes/s  pass ms" + "".join(f"  {c:>4}-step p50/p99 s" for c in classes)
             + "   first progress p50/p99 ms (in passes)   load avg"]
    for label, result in results.items():
        records = result["records"]
        images = sum(r["samples"] for r in records) / result["elapsed"]
        pass_ms = 1000 * result["busy"] / max(1, result["passes"])  # mean time of one network pass
        cells = ""
        for c in classes:
            lat = [r["latency"] for r in records if r["steps"] == c]
            cells += f"  {statistics.median(lat) if lat else float('nan'):>8.2f} /{_p(lat, 0.99):>7.2f}"
        first = [r["first"] * 1000 for r in records]
        f50, f99 = statistics.median(first), _p(first, 0.99)
        lines.append(f"    {label:<14}{images:>9.2f}  {result['passes'] / result['elapsed']:>8.1f}  {pass_ms:>7.1f}{cells}"
                     f"   {f50:>8.1f} /{f99:>8.1f} ({f50 / pass_ms:.1f} / {f99 / pass_ms:.1f})"
                     f"   {min(result['loads']):.1f}-{max(result['loads']):.1f}")
    lines.append(f"    ({len(next(iter(results.values()))['records'])} requests per server, the same schedule for both; "
                 "pass ms: busy sampling time / network passes)")
    for label, result in results.items():  # first progress = wait in the engine + the first pass + transport
        pass_ms = 1000 * result["busy"] / max(1, result["passes"])
        queued = [r["queued"] * 1000 for r in result["records"]]
        lines.append(f"    {label}: the first pass began p50 {statistics.median(queued):.1f} / p99 {_p(queued, 0.99):.1f} ms "
                     f"after the engine admitted the request ({statistics.median(queued) / pass_ms:.1f} / "
                     f"{_p(queued, 0.99) / pass_ms:.1f} passes)")
    if "step-level" in results:
        lines += first_progress(results["step-level"]["records"])
    if set(results) == {"request-level", "step-level"}:
        req, step = results["request-level"], results["step-level"]
        short = classes[0]
        p99 = [_p([r["latency"] for r in x["records"] if r["steps"] == short], 0.99) for x in (req, step)]
        ips = [sum(r["samples"] for r in x["records"]) / x["elapsed"] for x in (req, step)]
        lines.append(f"    {short}-step p99: request-level / step-level = {p99[0] / p99[1]:.1f}x at "
                     f"{ips[1] / ips[0]:.2f}x the images/s")
    return lines


def first_progress(records: list[dict[str, Any]]) -> list[str]:
    """Step-level: where the time to first progress went, p50 ms of each part, and the total in units of the request's
    own first pass (the pass at the batch that ran: "a network pass's time" of the goal)."""
    def ms(key: str) -> float:
        return 1000 * statistics.median(r[key] for r in records)

    ratio = [r["first"] / r["pass_s"] for r in records if r["pass_s"] > 0]
    return [f"    step-level, first progress p50 ms: sent -> admitted {ms('admit'):.1f}, -> its first pass began "
            f"{ms('wait'):.1f}, that pass {ms('pass_s'):.1f} ({statistics.median(r['pass_rows'] for r in records):.0f} rows), "
            f"-> the client had the event {ms('deliver'):.1f}",
            f"    step-level, first progress in units of the request's own first pass: p50 {statistics.median(ratio):.2f}, "
            f"p90 {_p(ratio, 0.9):.2f}, p99 {_p(ratio, 0.99):.2f}"]


def run_mixed(hub: Hub, ref: str, sampler: str, rate: float, duration: float, classes: list[int], rounds: int) -> list[str]:
    plans = [schedule(rate, duration / rounds, classes, seed=round_) for round_ in range(rounds)]
    return render(measure(hub, ref, plans, sampler), classes, rate, duration)


def main(argv: list[str] | None = None) -> None:
    import bench.serving as serving  # noqa: PLC0415 - reuse its model preparation and machine line

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--step-classes", default="10,50,250")
    parser.add_argument("--rounds", type=int, default=2,
                        help="the duration is cut into this many schedules, each sent to both servers in turn (ABBA...), "
                             "so that a shared machine's drifting load weighs on both alike")
    parser.add_argument("--quick", action="store_true")
    args, rest = parser.parse_known_args(argv)
    sargs = serving.parse_args(rest + (["--quick"] if args.quick else []))
    classes = [int(c) for c in args.step_classes.split(",")]
    if args.quick:
        args.rate, args.duration, classes = 4.0, 1.0, [2, 4, 8]
    with tempfile.TemporaryDirectory() as tmp:
        hub, ref, _, _ = serving.prepare(sargs, Path(tmp))
        try:
            lines = run_mixed(hub, ref, sargs.sampler, args.rate, args.duration, classes, args.rounds)
        finally:
            hub.close()
    print(f"genhub mixed-workload benchmark: {ref}, {sargs.sampler}")
    print(f"machine: {serving.machine()}; torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
