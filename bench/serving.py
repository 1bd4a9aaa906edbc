"""Serving benchmark: gRPC overhead and batching throughput, in one run.

    python bench/serving.py                      # a fresh small DDPM in a temp registry
    python bench/serving.py --model ddpm-digits --home ~/.local/share/genhub   # a registered model
    python bench/serving.py --quick              # a smoke run (seconds)

(a) The same request in-process (``Hub.generate``) and through gRPC on loopback
    (``Client.generate``, raw tensors back): p50/p99, their ratio and the added ms.
(b) Images per second with 1, 8 and 32 concurrent clients, each asking for one
    image at a time, with step-level batching on (the default) and off (``--max-batch 1``: one row per pass).
(c) The same load (batching on) through hub.v1 Generate and through the open
    inference protocol's ModelInfer (KServe V2, what Triton clients send), in alternating slices.
(d) The generation log's cost: images per second of one-pass requests (one
    network pass each: DDIM 1 step) from ``--log-clients`` callers, with the log on
    (the batched background writer) and off (``--no-generation-log``), servers alternated.
(e) ``--scaling-only``: images/s and CPU ms per image (server, clients) by client count through one step-level
    server, and the same sampling in-process with N rows per pass: what bounds batching's gain on this CPU.

The server is a real `genhub serve` subprocess (``--server subprocess``, the
default) so that it does not share the benchmark's GIL; ``--server thread`` runs
it in this process instead (for smoke tests).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import torch
from grpc import aio

from hub import auth
from hub.client import Client, build_request
from hub.core import Hub
from hub.devices import hardware_description
from hub.inference import grpc_predict_v2_pb2_grpc
from hub.model import SampleRequest, TrainOptions
from hub.server.inference_codec import infer_request
from hub.v1 import generation_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import cpu  # noqa: E402  (bench/cpu.py: CPU time by process)

WARMUP = 10  # requests per row before measuring (first calls build kernels and connections)
BENCH_MODEL = "bench-ddpm"
# A small image DDPM: 1x16x16 digits, a two-level UNet of width 32 (about 0.5 M parameters).
BENCH_CONFIG = dict(base_channels=32, channel_mults=[1, 2], num_timesteps=1000, default_steps=20)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="registered model to use (default: train a small DDPM in a temp registry)")
    parser.add_argument("--db", help="registry URL holding --model")
    parser.add_argument("--home", help="genhub home holding --model")
    parser.add_argument("--steps", type=int, default=10, help="sampling steps per request")
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--iterations", type=int, default=100, help="requests per latency measurement")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per throughput measurement")
    parser.add_argument("--rounds", type=int, default=4, help="(c): alternating hub.v1 / open protocol slices per cell")
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients, comma-separated")
    parser.add_argument("--log-clients", type=int, default=8, help="(d): concurrent callers")
    parser.add_argument("--log-rounds", type=int, default=3, help="(d): alternated log on / log off servers")
    parser.add_argument("--log-only", action="store_true", help="measure only (d), the generation log's cost")
    parser.add_argument("--scaling-only", action="store_true",
                        help="measure only (e): images/s and CPU per image by client count, and the in-process pass cost")
    parser.add_argument("--server", choices=("subprocess", "thread"), default="subprocess")
    # One thread on both sides by default: on a small machine the OpenMP teams of several processes otherwise
    # contend (spinning threads), which distorts the in-process vs gRPC comparison far more than gRPC costs.
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads, in this process and the server")
    parser.add_argument("--quick", action="store_true", help="few iterations, short runs: a smoke test")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.iterations, args.duration, args.steps, args.rounds, args.log_rounds = 10, 0.5, 2, 2, 1
    if args.model and not (args.db or args.home):
        parser.error("--model needs --db or --home: the registry the model is in")
    return args


def prepare(args: argparse.Namespace, tmp: Path) -> tuple[Hub, str, str, str]:
    """(hub, model ref, db url, home) of the model to benchmark."""
    if args.model:
        hub = Hub.open(db_url=args.db, home=args.home)
        return hub, args.model, hub.registry.url, str(args.home or tmp)
    db_url = f"sqlite:///{tmp}/bench.db"
    hub = Hub.open(db_url=db_url, home=tmp)
    # Quality does not matter for serving speed: a few training steps give real weights of the real shape.
    steps = 1 if args.quick else 5
    hub.train("ddpm", "digits16", model_name=BENCH_MODEL, options=TrainOptions(steps=steps, batch_size=16),
              config_overrides=BENCH_CONFIG, command="bench/serving.py")
    return hub, BENCH_MODEL, db_url, str(tmp)


@contextmanager
def server(args: argparse.Namespace, hub: Hub, db_url: str, home: str, max_batch: int = 64,
           request_level: bool = False, log: bool = True) -> Iterator[str]:
    """A server with the given batching (``max_batch`` rows per pass; request- or step-level) and generation log
    (on or off); yields its address."""
    if args.server == "thread":
        from hub.server.app import BackgroundServer

        hub.log_enabled = log
        try:
            with BackgroundServer(hub, "127.0.0.1:0", max_batch=max_batch, step_level=not request_level) as background:
                use_tokens(hub.home)
                SERVER_PIDS[background.address] = os.getpid()  # the clients' CPU time counts too, in this mode
                yield background.address
        finally:
            hub.log_enabled = True
        return
    command = [sys.executable, "-m", "hub", "serve", "--address", "127.0.0.1:0", "--db", db_url, "--home", home,
               "--max-batch", str(max_batch), *(["--request-level"] if request_level else []),
               *([] if log else ["--no-generation-log"])]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=REPO,
                               env={**os.environ, "OMP_NUM_THREADS": str(args.threads),  # same threads as in-process
                                    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    try:
        address = _wait_for_address(process)
        use_tokens(home)
        SERVER_PIDS[address] = process.pid
        yield address
    finally:
        process.terminate()
        process.wait(60)


TOKENS: dict[str, str | None] = {auth.GENERATE: None}  # what this run's clients send
SERVER_PIDS: dict[str, int] = {}  # address -> the serving process, whose CPU time (c) reads



def use_tokens(home: Any) -> None:
    """Clients of this run send the generate token the server's first start wrote (else $GENHUB_TOKEN)."""
    TOKENS[auth.GENERATE] = auth.client_token(auth.GENERATE, home)


def _wait_for_address(process: subprocess.Popen[str]) -> str:
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        match = re.search(r"genhub serving on (\S+)", line)
        if match:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()  # keep draining
            return match.group(1)
    raise RuntimeError("genhub serve did not start:\n" + "".join(lines))


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


def latencies(hub: Hub, ref: str, addresses: list[str], args: argparse.Namespace) -> list[list[float]]:
    """Milliseconds per request: the bare model, Hub.generate, then each server; interleaved so all see the same load."""
    model = hub.load(ref).model
    clients = [Client(address, timeout=120, token=TOKENS[auth.GENERATE]) for address in addresses]
    times: list[list[float]] = [[] for _ in range(len(addresses) + 2)]
    try:
        for client in clients:
            client.wait_ready()
        for i in range(args.iterations + WARMUP):
            request = SampleRequest.from_seed(i, 1, sampler=args.sampler, steps=args.steps)
            calls = [lambda: model.sample(request), lambda: hub.generate(ref, request, log=False)]
            calls += [lambda c=c: c.generate(ref, seed=i, sampler=args.sampler, steps=args.steps, format="tensor") for c in clients]
            for row, call in zip(times, calls):
                start = time.perf_counter()
                call()
                if i >= WARMUP:
                    row.append((time.perf_counter() - start) * 1000)
    finally:
        for client in clients:
            client.close()
    return times


def round_trip(address: str, args: argparse.Namespace) -> list[float]:
    """Milliseconds of a gRPC call that does no sampling and no database work (ListPlugins)."""
    times = []
    with Client(address, timeout=60, token=TOKENS[auth.GENERATE]) as client:
        for i in range(args.iterations + WARMUP):
            start = time.perf_counter()
            client.list_plugins()
            if i >= WARMUP:
                times.append((time.perf_counter() - start) * 1000)
    return times


def _caller(channel: aio.Channel, ref: str, args: argparse.Namespace, protocol: str) -> Callable[[int], Awaitable[int]]:
    """One request of one image (seed -> samples in its sampling call) through ``protocol``: hub.v1 or the open one."""
    if protocol == "hub.v1":
        stub = generation_pb2_grpc.GenerationServiceStub(channel)

        async def one(seed: int) -> int:
            response = await stub.Generate(build_request(ref, seed=seed, sampler=args.sampler, steps=args.steps), timeout=300,
                                           metadata=auth.bearer_metadata(TOKENS[auth.GENERATE]))
            return response.batch_samples

        return one
    oip = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)

    async def infer(seed: int) -> int:
        request = infer_request(ref, seed=seed, sampler=args.sampler, steps=args.steps)
        response = await oip.ModelInfer(request, timeout=300, metadata=auth.bearer_metadata(TOKENS[auth.GENERATE]))
        return response.parameters["batch_samples"].int64_param

    return infer


async def _throughput(address: str, ref: str, clients: int, args: argparse.Namespace, protocol: str,
                      duration: float) -> tuple[list[int], float, float]:
    """(samples per sampling call of each request done, seconds, the server's CPU seconds) with ``clients``
    concurrent callers for ``duration``, after a warm-up."""
    async with aio.insecure_channel(address) as channel:
        one = _caller(channel, ref, args, protocol)

        await asyncio.gather(*(one(i) for i in range(clients)))  # warm-up: connections, worker, first batch
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + duration
        done: list[int] = []

        async def caller(index: int) -> None:
            seed = index * 1_000_000
            while loop.time() < stop_at:
                done.append(await one(seed))
                seed += 1

        start, cpu_start = loop.time(), cpu.process_seconds(SERVER_PIDS[address])
        await asyncio.gather(*(caller(i) for i in range(clients)))
        elapsed, server_cpu = loop.time() - start, cpu.process_seconds(SERVER_PIDS[address]) - cpu_start
    return done, elapsed, server_cpu


def throughput(address: str, ref: str, clients: int, args: argparse.Namespace) -> tuple[float, float]:
    """(images per second, mean samples per sampling call) through hub.v1."""
    done, elapsed, _ = asyncio.run(_throughput(address, ref, clients, args, "hub.v1", args.duration))
    return len(done) / elapsed, statistics.mean(done)


def paired_throughput(address: str, ref: str, clients: int, args: argparse.Namespace) -> dict[str, tuple[float, float, float]]:
    """hub.v1 against the open protocol under the same load: alternating slices (ABBA...), ``args.duration`` seconds
    in all for each, so a machine whose load drifts during the run weighs on both alike. Each protocol gets
    (images/s, mean samples per sampling call, server CPU ms per image)."""
    totals: dict[str, tuple[list[int], float, float]] = {"hub.v1": ([], 0.0, 0.0), "inference": ([], 0.0, 0.0)}
    for round_ in range(args.rounds):
        for protocol in (("hub.v1", "inference") if round_ % 2 == 0 else ("inference", "hub.v1")):
            done, elapsed, cpu = asyncio.run(_throughput(address, ref, clients, args, protocol, args.duration / args.rounds))
            done_all, elapsed_all, cpu_all = totals[protocol]
            totals[protocol] = (done_all + done, elapsed_all + elapsed, cpu_all + cpu)
    return {protocol: (len(done) / elapsed, statistics.mean(done), 1000 * cpu / len(done))
            for protocol, (done, elapsed, cpu) in totals.items()}


def log_cost(args: argparse.Namespace, hub: Hub, ref: str, db_url: str, home: str) -> dict[str, list[float]]:
    """(d): images/s of one-pass requests with the generation log on and off, servers alternated (on, off, off, on...)."""
    rates: dict[str, list[float]] = {"on": [], "off": []}
    one_pass = argparse.Namespace(**{**vars(args), "steps": 1})
    for round_ in range(args.log_rounds):
        for label in (("on", "off") if round_ % 2 == 0 else ("off", "on")):
            with server(args, hub, db_url, home, log=label == "on") as address:
                rates[label].append(throughput(address, ref, args.log_clients, one_pass)[0])
    return rates


def scaling(args: argparse.Namespace, hub: Hub, ref: str, db_url: str, home: str, clients: list[int]) -> list[str]:
    """(e): what batching gives and what bounds it. Through one step-level server, each client count in alternating
    slices (``--rounds``): images/s, rows per pass and CPU ms per image of the server and of this process (the
    clients). After each round, with the server idle, the same sampling in this process (``model.sample`` of N
    images: N rows per pass): a pass's time by rows, so the most that batching N requests can give on this CPU."""
    totals = {n: [0, 0.0, 0.0, 0.0, 0] for n in clients}  # requests, seconds, server CPU, client CPU, rows
    alone: dict[int, list[float]] = {n: [] for n in sorted({1, *clients})}  # rows -> seconds of model.sample
    model = hub.load(ref).model
    with server(args, hub, db_url, home) as address:
        for round_ in range(args.rounds):
            for n in (clients if round_ % 2 == 0 else clients[::-1]):
                client_cpu = cpu.process_seconds(os.getpid())
                done, elapsed, server_cpu = asyncio.run(_throughput(address, ref, n, args, "hub.v1", args.duration / args.rounds))
                total = totals[n]
                total[0], total[1], total[2] = total[0] + len(done), total[1] + elapsed, total[2] + server_cpu
                total[3] += cpu.process_seconds(os.getpid()) - client_cpu
                total[4] += sum(done)
            for n, times in alone.items():
                request = SampleRequest.from_seed(round_, n, sampler=args.sampler, steps=args.steps)
                for repeat in range(3):  # the first builds kernels
                    start = time.perf_counter()
                    model.sample(request)
                    if repeat:
                        times.append(time.perf_counter() - start)
    lines = [f"(e) batching by client count ({args.sampler} {args.steps} steps, 1 image per request; {args.rounds} alternating "
             f"slices, {args.duration:g} s per count in all; load average {os.getloadavg()[0]:.1f} at the end)",
             "    clients   images/s   vs 1 client   rows/pass   server CPU ms/image   clients' CPU ms/image"]
    base = totals[clients[0]][0] / totals[clients[0]][1]
    for n, (count, seconds, server_cpu, client_cpu, rows) in totals.items():
        lines.append(f"    {n:>7}   {count / seconds:>8.1f}   {count / seconds / base:>10.2f}x   {rows / count:>9.1f}"
                     f"   {1000 * server_cpu / count:>19.1f}   {1000 * client_cpu / count:>21.1f}")
    lines += ["    the same sampling in this process between the slices, no server: model.sample of N images (N rows per pass)",
              "       rows   ms/pass   ms/row   images/s   vs 1 row"]
    one = 1 / statistics.median(alone[1])  # images/s of one row per pass
    for n, times in alone.items():
        seconds = statistics.median(times)
        lines.append(f"    {n:>7}   {1000 * seconds / args.steps:>7.1f}   {1000 * seconds / args.steps / n:>6.2f}"
                     f"   {n / seconds:>8.1f}   {n / seconds / one:>7.2f}x")
    return lines


def run(argv: list[str] | None = None) -> str:
    """Run the benchmark; return the tables as text."""
    args = parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        hub, ref, db_url, home = prepare(args, Path(tmp))
        try:
            version = hub.resolve(ref)
            if args.log_only:
                return render_log(args, log_cost(args, hub, ref, db_url, home), version)
            if args.scaling_only:
                return "\n".join(scaling(args, hub, ref, db_url, home, clients))
            with server(args, hub, db_url, home, max_batch=1) as off, server(args, hub, db_url, home) as on:
                bare, inproc, results["latency off"], results["latency on"] = latencies(hub, ref, [off, on], args)
                results["latency bare"] = bare
                results["round trip"] = round_trip(off, args)
                for n in clients:
                    for label, address in (("off", off), ("on", on)):
                        results[f"tput {label} {n}"] = throughput(address, ref, n, args)
                    results[f"both {n}"] = paired_throughput(on, ref, n, args)
            results["log"] = log_cost(args, hub, ref, db_url, home)
        finally:
            hub.close()
    return render(args, version, clients, inproc, results)


def render(args: argparse.Namespace, version: Any, clients: list[int], inproc: list[float], results: dict[str, Any]) -> str:
    base50, base99 = percentiles(inproc)
    lines = [
        f"genhub serving benchmark: {version.model}:{version.version} ({version.family}, "
        f"{version.config.get('sample_shape', '?')}), {args.sampler} {args.steps} steps, 1 image per request",
        f"machine: {machine()}; torch {torch.__version__}, {args.threads} intra-op thread(s) per process",
        f"server: {args.server}; {args.iterations} requests per latency row, {args.duration:g} s per throughput cell",
        "",
        "(a) latency of one request           p50 ms   p99 ms   p50 ratio   added p50 ms   added p99 ms",
        f"    in-process (Hub.generate)      {base50:7.1f}  {base99:7.1f}      1.00x            -              -",
    ]
    rows = (("bare", "in-process, bare model.sample"), ("off", "gRPC loopback, batching off"),
            ("on", "gRPC loopback, step-level"))
    for label, name in rows:
        p50, p99 = percentiles(results[f"latency {label}"])
        lines.append(f"    {name:<31}{p50:7.1f}  {p99:7.1f}   {p50 / base50:8.2f}x   {p50 - base50:12.1f}   {p99 - base99:12.1f}")
    rt50, rt99 = percentiles(results["round trip"])
    lines.append(f"    gRPC round trip alone (ListPlugins, no sampling): p50 {rt50:.2f} ms, p99 {rt99:.2f} ms")
    lines += ["", "(b) images/s (mean samples per sampling call)"]
    lines.append("    clients   " + "".join(f"{'batching ' + label:>24}" for label in ("off", "on")))
    for n in clients:
        cells = "".join(f"{results[f'tput {label} {n}'][0]:>15.1f} ({results[f'tput {label} {n}'][1]:4.1f})  " for label in ("off", "on"))
        lines.append(f"    {n:>7}   {cells}")
    lines += ["", f"(c) the same load through both APIs (batching on; {args.rounds} alternating slices of each): images/s "
              "(mean samples per sampling call), and the server's CPU ms per image (user + system)",
              "    clients          hub.v1 Generate    open protocol ModelInfer    ratio   CPU ms/image v1  open   ratio"]
    for n in clients:
        (v1, v1_batch, v1_cpu), (oip, oip_batch, oip_cpu) = results[f"both {n}"]["hub.v1"], results[f"both {n}"]["inference"]
        lines.append(f"    {n:>7}   {v1:>15.1f} ({v1_batch:4.1f})   {oip:>17.1f} ({oip_batch:4.1f})    {oip / v1:5.2f}x"
                     f"   {v1_cpu:13.1f} {oip_cpu:6.1f}  {v1_cpu / oip_cpu:5.2f}x")
    lines += ["", render_log(args, results["log"])]
    return "\n".join(lines)


def render_log(args: argparse.Namespace, rates: dict[str, list[float]], version: Any = None) -> str:
    """Row (d): one-pass throughput with the generation log on and off (with a header when printed alone)."""
    on, off = (statistics.mean(rates[k]) for k in ("on", "off"))
    lines = [] if version is None else [f"genhub serving benchmark: {version.model}:{version.version}; machine: {machine()}"]
    lines += [f"(d) generation log, one-pass requests ({args.sampler} 1 step), {args.log_clients} clients, "
              f"{args.log_rounds} alternated rounds of {args.duration:g} s per server",
              "    log on (batched background writer)   log off   on/off",
              f"    {on:>20.1f} images/s   {off:>7.1f}   {on / off:5.2f}x",
              "    per round, on: " + ", ".join(f"{r:.1f}" for r in rates["on"]) + "; off: " + ", ".join(f"{r:.1f}" for r in rates["off"])]
    return "\n".join(lines)


def machine() -> str:
    """CPU model, core count and load (GPU name if the model ran on one)."""
    name = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", {hardware_description()}" if torch.cuda.is_available() else ""
    return f"{name}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end{gpu}"


def main(argv: list[str] | None = None) -> None:
    print(run(argv))


if __name__ == "__main__":
    main()
