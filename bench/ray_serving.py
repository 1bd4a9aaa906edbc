"""Ray Serve benchmark: the same model and load through Serve's gRPC ingress and through the local server.

    python bench/ray_serving.py               # a fresh small DDPM in a temp registry, local Ray instance
    python bench/ray_serving.py --quick       # a smoke run
    python bench/ray_serving.py --compare-defaults   # also Ray with Serve's own thread settings and nice 15, first

(a) p50/p99 latency and images per second with ``--clients`` concurrent callers against `genhub serve`
    (local backend, a subprocess) and against the Ray backend (one replica: the same compute), both up at
    once and measured in alternating slices (``--rounds``, ABBA...) so that a shared machine's drifting load
    weighs on both alike; with each request's time inside the engine (queue + sampling, as the server
    reports it) apart from the time around it (transport, proxy, ingress, handle calls, logging).
(b) Where the CPU goes: CPU milliseconds per request of each process during those slices (the local
    server; Ray's gRPC proxy, ingress, replica, and the rest of Ray; this benchmark's clients), the cores
    used by other processes on the machine meanwhile, and the replica's nice value.
(c) A load step on an autoscaling deployment of the same weights (1 to
    ``--max-replicas``, short delays): replica count over time while the load
    is on and after it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch
from grpc import aio

from hub import auth
from hub.client import Client, build_request
from hub.core import Hub
from hub.devices import hardware_description
from hub.model import TrainOptions
from hub.v1 import generation_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import cpu  # noqa: E402
from serving import BENCH_CONFIG, TOKENS, percentiles, server  # noqa: E402  (the local-server harness of bench/serving.py)

MODEL = "bench-ddpm"  # one replica: compared with the local server
SCALING_MODEL = "bench-ddpm-scaling"  # the same weights, autoscaling


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8, help="concurrent callers")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per backend (all slices together)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating slices per backend in (a)")
    parser.add_argument("--worker-niceness", type=int, default=None,
                        help="nice value of Ray's workers (default: hub.ray.runner's; Ray's own default is 15)")
    parser.add_argument("--ray-env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment variable for the Ray instance (set before ray.init), e.g. Serve's flags")
    parser.add_argument("--compare-defaults", action="store_true",
                        help="first measure Ray with Serve's own thread settings and worker niceness (the 'before' row)")
    parser.add_argument("--no-step", action="store_true", help="skip the load step (c)")
    parser.add_argument("--steps", type=int, default=10, help="sampling steps per request")
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--step-load", type=int, default=16, help="callers during the load step")
    parser.add_argument("--step-duration", type=float, default=30.0, help="seconds the load step lasts")
    parser.add_argument("--max-replicas", type=int, default=3)
    parser.add_argument("--num-cpus", type=float, default=0.4, help="num_cpus per Ray replica (1 + max-replicas of them fit in 2 CPUs)")
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.step_duration, args.steps = 3.0, 10.0, 2
    args.threads = 1  # bench/serving.py's server() reads it
    args.server = "subprocess"
    torch.set_num_threads(1)
    return args


def prepare(tmp: Path, quick: bool) -> tuple[Hub, str]:
    db_url = f"sqlite:///{tmp}/bench.db"
    hub = Hub.open(db_url=db_url, home=tmp)
    version = hub.train("ddpm", "digits16", model_name=MODEL, options=TrainOptions(steps=1 if quick else 5, batch_size=16),
                        config_overrides=BENCH_CONFIG, command="bench/ray_serving.py")
    hub.registry.ensure_model(SCALING_MODEL, version.family, hub.registry.get_model(MODEL).plugin)
    hub.registry.add_version(SCALING_MODEL, config=version.config, artifact_digest=version.artifact_digest, dataset=version.dataset)
    return hub, db_url


async def _load(address: str, ref: str, clients: int, duration: float, steps: int, sampler: str,
                seed0: int = 0) -> tuple[list[tuple[float, float, int]], float]:
    """(latency ms, ms inside the engine, samples of its largest pass) of every request of ``clients`` callers over
    ``duration`` s, and the elapsed seconds."""
    async with aio.insecure_channel(address) as channel:
        stub = generation_pb2_grpc.GenerationServiceStub(channel)

        async def one(seed: int) -> tuple[float, float, int]:
            start = time.perf_counter()
            response = await stub.Generate(build_request(ref, seed=seed, sampler=sampler, steps=steps), timeout=300,
                                           metadata=auth.bearer_metadata(TOKENS[auth.GENERATE]))
            engine_ms = (response.queue_seconds + response.duration_seconds) * 1000
            return (time.perf_counter() - start) * 1000, engine_ms, response.batch_samples

        await asyncio.gather(*(one(seed0 + i) for i in range(clients)))  # warm-up: connections, first batch
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + duration
        records: list[tuple[float, float, int]] = []

        async def caller(index: int) -> None:
            seed = seed0 + index * 1_000_000
            while loop.time() < stop_at:
                records.append(await one(seed))
                seed += 1

        start = loop.time()
        await asyncio.gather(*(caller(i) for i in range(clients)))
        return records, loop.time() - start


def measure_side_by_side(addresses: dict[str, str], ref: str, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Alternating slices (ABBA...) of the same load on each backend; per backend its records, seconds and CPU use."""
    totals: dict[str, dict[str, Any]] = {name: {"records": [], "elapsed": 0.0, "cpu": {}, "loads": []} for name in addresses}
    names = list(addresses)
    for round_ in range(args.rounds):
        for name in (names if round_ % 2 == 0 else names[::-1]):
            before = cpu.snapshot()
            records, elapsed = asyncio.run(_load(addresses[name], ref, args.clients, args.duration / args.rounds,
                                                 args.steps, args.sampler, seed0=round_ * 100_000))
            used = cpu.used(before, cpu.snapshot())
            total = totals[name]
            total["records"] += records
            total["elapsed"] += elapsed
            total["loads"].append(os.getloadavg()[0])
            for group, seconds in used.items():
                total["cpu"][group] = total["cpu"].get(group, 0.0) + seconds
    return totals


def summary(total: dict[str, Any]) -> dict[str, float]:
    latencies = [r[0] for r in total["records"]]
    outside = [r[0] - r[1] for r in total["records"]]
    p50, p99 = percentiles(latencies)
    return {"p50": p50, "p99": p99, "ips": len(latencies) / total["elapsed"], "n": len(latencies),
            "engine50": statistics.median(r[1] for r in total["records"]), "outside50": statistics.median(outside),
            "rows": statistics.mean(r[2] for r in total["records"])}


def load_step(address: str, args: argparse.Namespace) -> list[tuple[float, int, int]]:
    """(seconds, RUNNING replicas, requests done) every second: load on for step_duration, then off until back at 1."""
    from hub.ray.constants import deployment_name
    from hub.ray.runner import replicas

    done = [0]
    stop = threading.Event()

    def run_load() -> None:
        async def go() -> None:
            async with aio.insecure_channel(address) as channel:
                stub = generation_pb2_grpc.GenerationServiceStub(channel)

                async def caller(index: int) -> None:
                    seed = index * 1_000_000
                    while not stop.is_set():
                        await stub.Generate(build_request(SCALING_MODEL, seed=seed, sampler=args.sampler, steps=args.steps),
                                            timeout=300, metadata=auth.bearer_metadata(TOKENS[auth.GENERATE]))
                        done[0] += 1
                        seed += 1

                await asyncio.gather(*(caller(i) for i in range(args.step_load)))

        asyncio.run(go())

    timeline = []
    thread = threading.Thread(target=run_load, daemon=True)
    t0 = time.monotonic()
    thread.start()
    name = deployment_name(SCALING_MODEL)
    while True:
        now = time.monotonic() - t0
        count = replicas(name)
        timeline.append((round(now, 1), count, done[0]))
        if now >= args.step_duration and not stop.is_set():
            stop.set()
        if stop.is_set() and count <= 1 and now > args.step_duration + 2:
            break
        if now > args.step_duration + 90:
            break
        time.sleep(1.0)
    thread.join(timeout=60)
    return timeline


def run(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    from hub.ray import app, runner
    from hub.ray.constants import SERVE_ENV
    from hub.ray.settings import ServeSettings

    lines = [f"# bench/ray_serving.py: {hardware_description('cpu')}, {os.cpu_count()} CPUs, {platform.python_version()}",
             f"# model: small DDPM (digits16, {BENCH_CONFIG}), {args.sampler} {args.steps} steps, 1 image per request",
             f"# load average at the start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}"]
    ours = {} if args.worker_niceness is None else {"RAY_worker_niceness": str(args.worker_niceness)}
    ours.update(item.split("=", 1) for item in args.ray_env)
    # Ray's and Serve's own defaults, which hub.ray.runner changes (worker niceness, SERVE_ENV): the "before" row
    defaults = {"RAY_worker_niceness": "15", **{key: "1" for key in SERVE_ENV}}
    phases = ([(RAY_DEFAULTS, defaults)] if args.compare_defaults else []) + [(RAY, ours)]
    measured: list[dict[str, dict[str, Any]]] = []
    timeline: list[tuple[float, int, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        hub, db_url = prepare(Path(tmp), args.quick)
        fixed = ServeSettings(num_cpus=args.num_cpus, max_ongoing_requests=64, max_batch_size=64)
        scaling = fixed.replace({"max_replicas": args.max_replicas, "target_ongoing_requests": 2, "max_ongoing_requests": 4,
                                 "upscale_delay_s": 2, "downscale_delay_s": 10, "metrics_interval_s": 1,
                                 "look_back_period_s": 3}, "bench")
        with server(args, hub, db_url, tmp) as local:
            for label, extra in phases:
                port = runner.free_port()
                runner.start(port, num_cpus=os.cpu_count(), env={"RAY_AUTH_MODE": "disabled", **runner.FAST_AUTOSCALING_ENV,
                                                                 **runner.LOCAL_ENV, **extra})
                try:
                    started = time.monotonic()
                    runner.run(app.build(app.HubArgs(db_url, tmp), {MODEL: fixed, SCALING_MODEL: scaling}))
                    lines.append(f"# {label}: app RUNNING after {time.monotonic() - started:.0f} s; replica nice value "
                                 f"{cpu.nice_of('ray::ServeReplica:genhub:model-' + MODEL)} (local server's "
                                 f"{cpu.nice_of('hub serve')}); " + " ".join(f"{k}={os.environ.get(k)}" for k in sorted(defaults)))
                    with Client(f"127.0.0.1:{port}", timeout=120, token=TOKENS[auth.GENERATE]) as client:
                        for name in (MODEL, SCALING_MODEL):  # load the weights before measuring
                            client.generate(name, seed=0, steps=args.steps, sampler=args.sampler)
                    measured.append(measure_side_by_side({LOCAL: local, label: f"127.0.0.1:{port}"}, MODEL, args))
                    if label == RAY and not args.no_step:
                        timeline = load_step(f"127.0.0.1:{port}", args)
                finally:
                    runner.stop()
        hub.close()
    return "\n".join(lines + render(args, measured, timeline))


LOCAL = "local (genhub serve, grpc.aio)"
RAY, RAY_DEFAULTS = "ray (Serve gRPC ingress, 1 replica)", "ray, Serve's threads, nice 15"


def render(args: argparse.Namespace, measured: list[dict[str, dict[str, Any]]],
           timeline: list[tuple[float, int, int]]) -> list[str]:
    lines = ["", f"(a) {args.clients} concurrent callers, {args.duration:g} s per backend in {args.rounds} alternating slices"
             + (" (each Ray setting against the same local server, one after the other)" if len(measured) > 1 else ""),
             f"{'backend':<38} {'p50 ms':>8} {'p99 ms':>8} {'images/s':>9} {'requests':>9} {'in engine':>10} "
             f"{'around it':>10} {'rows/pass':>10} {'load avg':>9}"]
    for totals in measured:
        results = {name: summary(total) for name, total in totals.items()}
        for name, r in results.items():
            loads = totals[name]["loads"]
            lines.append(f"{name:<38} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['ips']:>9.1f} {r['n']:>9.0f} {r['engine50']:>10.1f} "
                         f"{r['outside50']:>10.1f} {r['rows']:>10.1f} {min(loads):>4.1f}-{max(loads):<4.1f}")
        ray = next(name for name in results if name != LOCAL)
        lines.append(f"  {ray} / local images/s: {results[ray]['ips'] / results[LOCAL]['ips']:.2f}x")
    lines.append("(in engine, around it: p50 ms of queue + sampling as the server reports it, and of the rest of the call; "
                 "rows/pass: mean of each request's largest pass)")
    columns = [(f"{'local' if name == LOCAL else 'ray' if name == RAY else 'ray-dflt'}{'/' + str(k + 1) if len(measured) > 1 else ''}",
                total) for k, totals in enumerate(measured) for name, total in totals.items()]
    groups = sorted({g for _, total in columns for g in total["cpu"]}, key=lambda g: (g == cpu.OTHERS, g))
    lines += ["", "(b) CPU ms per request by process, during each backend's slices (2 CPUs = 2,000 ms per second)",
              f"{'process':<52}" + "".join(f"{name:>11}" for name, _ in columns)]

    def per_request(total: dict[str, Any], seconds: float) -> str:
        return f"{seconds * 1000 / max(1, len(total['records'])):>11.1f}"

    for group in groups:
        if group != cpu.OTHERS:
            lines.append(f"{group:<52}" + "".join(per_request(t, t["cpu"].get(group, 0.0)) for _, t in columns))
    lines.append(f"{'total of this benchmark':<52}" + "".join(
        per_request(t, sum(v for g, v in t["cpu"].items() if g != cpu.OTHERS)) for _, t in columns))
    lines.append(f"{'other processes, cores busy (not per request)':<52}" + "".join(
        f"{t['cpu'].get(cpu.OTHERS, 0.0) / t['elapsed']:>11.2f}" for _, t in columns))
    if timeline:
        lines += ["", f"(c) load step: {args.step_load} callers for {args.step_duration:g} s on {SCALING_MODEL} "
                  f"(1..{args.max_replicas} replicas, target_ongoing_requests 2, upscale 2 s, downscale 10 s)",
                  f"{'t s':>6} {'replicas':>9} {'requests done':>14}"]
        lines += [f"{t:>6.1f} {n:>9} {d:>14}" for t, n, d in timeline]
    lines.append(f"# load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return lines


def main(argv: list[str] | None = None) -> None:
    print(run(argv))


if __name__ == "__main__":
    main()
