"""Ray Serve benchmark: the same model and load through Serve's gRPC ingress and through the local server.

    python bench/ray_serving.py               # a fresh small DDPM in a temp registry, local Ray instance
    python bench/ray_serving.py --quick       # a smoke run

(a) p50/p99 latency and images per second with ``--clients`` concurrent callers
    for ``--duration`` seconds each, against `genhub serve` (local backend, a
    subprocess) and against the Ray backend (one replica: the same compute).
(b) A load step on an autoscaling deployment of the same weights (1 to
    ``--max-replicas``, short delays): replica count over time while the load
    is on and after it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

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
from serving import BENCH_CONFIG, TOKENS, percentiles, server  # noqa: E402  (the local-server harness of bench/serving.py)

MODEL = "bench-ddpm"  # one replica: compared with the local server
SCALING_MODEL = "bench-ddpm-scaling"  # the same weights, autoscaling


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8, help="concurrent callers")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per backend")
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


async def _load(address: str, ref: str, clients: int, duration: float, steps: int, sampler: str) -> tuple[list[float], float]:
    """Latencies (ms) of every request of ``clients`` callers over ``duration`` s, and the elapsed seconds."""
    async with aio.insecure_channel(address) as channel:
        stub = generation_pb2_grpc.GenerationServiceStub(channel)

        async def one(seed: int) -> float:
            start = time.perf_counter()
            await stub.Generate(build_request(ref, seed=seed, sampler=sampler, steps=steps), timeout=300,
                                metadata=auth.bearer_metadata(TOKENS[auth.GENERATE]))
            return (time.perf_counter() - start) * 1000

        await asyncio.gather(*(one(i) for i in range(clients)))  # warm-up: connections, model load, first batch
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + duration
        latencies: list[float] = []

        async def caller(index: int) -> None:
            seed = index * 1_000_000
            while loop.time() < stop_at:
                latencies.append(await one(seed))
                seed += 1

        start = loop.time()
        await asyncio.gather(*(caller(i) for i in range(clients)))
        return latencies, loop.time() - start


def measure(address: str, ref: str, args: argparse.Namespace) -> dict[str, float]:
    latencies, elapsed = asyncio.run(_load(address, ref, args.clients, args.duration, args.steps, args.sampler))
    p50, p99 = percentiles(latencies)
    return {"p50": p50, "p99": p99, "ips": len(latencies) / elapsed, "n": len(latencies)}


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
    from hub.ray.settings import ServeSettings

    lines = [f"# bench/ray_serving.py: {hardware_description('cpu')}, {os.cpu_count()} CPUs, {platform.python_version()}",
             f"# model: small DDPM (digits16, {BENCH_CONFIG}), {args.sampler} {args.steps} steps, 1 image per request"]
    with tempfile.TemporaryDirectory() as tmp:
        hub, db_url = prepare(Path(tmp), args.quick)
        results: dict[str, dict[str, float]] = {}
        with server(args, hub, db_url, tmp, 5.0) as address:
            results["local (genhub serve, grpc.aio)"] = measure(address, MODEL, args)
        port = runner.free_port()
        fixed = ServeSettings(num_cpus=args.num_cpus, max_ongoing_requests=64, max_batch_size=64, batch_wait_timeout_s=0.005)
        scaling = fixed.replace({"max_replicas": args.max_replicas, "target_ongoing_requests": 2, "max_ongoing_requests": 4,
                                 "upscale_delay_s": 2, "downscale_delay_s": 10, "metrics_interval_s": 1,
                                 "look_back_period_s": 3}, "bench")
        runner.start(port, num_cpus=os.cpu_count(), env={"RAY_AUTH_MODE": "disabled", **runner.FAST_AUTOSCALING_ENV})
        try:
            started = time.monotonic()
            runner.run(app.build(app.HubArgs(db_url, tmp), {MODEL: fixed, SCALING_MODEL: scaling}))
            lines.append(f"# Ray: local instance, app RUNNING after {time.monotonic() - started:.0f} s")
            with Client(f"127.0.0.1:{port}", timeout=120, token=TOKENS[auth.GENERATE]) as client:
                client.generate(SCALING_MODEL, seed=0, steps=args.steps, sampler=args.sampler)  # load the weights
            results["ray (Serve gRPC ingress, 1 replica)"] = measure(f"127.0.0.1:{port}", MODEL, args)
            timeline = load_step(f"127.0.0.1:{port}", args)
        finally:
            runner.stop()
        hub.close()
    lines += ["", f"(a) {args.clients} concurrent callers, {args.duration:g} s each",
              f"{'backend':<40} {'p50 ms':>8} {'p99 ms':>8} {'images/s':>9} {'requests':>9}"]
    for name, r in results.items():
        lines.append(f"{name:<40} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['ips']:>9.1f} {r['n']:>9.0f}")
    lines += ["", f"(b) load step: {args.step_load} callers for {args.step_duration:g} s on {SCALING_MODEL} "
              f"(1..{args.max_replicas} replicas, target_ongoing_requests 2, upscale 2 s, downscale 10 s)",
              f"{'t s':>6} {'replicas':>9} {'requests done':>14}"]
    lines += [f"{t:>6.1f} {n:>9} {d:>14}" for t, n, d in timeline]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    print(run(argv))


if __name__ == "__main__":
    main()
