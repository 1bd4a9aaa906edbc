"""Slow readers cost a real `genhub serve` constant memory: a stream keeps only its newest undelivered event."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hub.client import Client, RemoteGeneration, StepProgress
from tests.server.harness import IMAGE_MODEL, ServeProcess, TinyHub

STREAMS = 16
# 200 steps of 64 samples with a raw-tensor preview every step: 16 KiB an event, 3.2 MiB a stream if the server
# kept every event for a reader that does not keep up (50 MiB for all 16, before protobuf and Python overheads).
STEPS = 200
ASK = dict(num_samples=64, seed=1, steps=STEPS, preview_every=1, format="tensor")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def read_slowly(client: Client, pause_s: float, slow_for_s: float) -> tuple[int, RemoteGeneration]:
    """One event every ``pause_s`` for ``slow_for_s`` seconds (the server samples at full speed meanwhile), then the rest."""
    events, slow_until = 0, time.monotonic() + slow_for_s
    for event in client.stream_generate(IMAGE_MODEL, **ASK):
        if isinstance(event, StepProgress):
            events += 1
            if time.monotonic() < slow_until:
                time.sleep(pause_s)
        else:
            return events, event
    raise AssertionError("the stream ended without a result")


def test_sixteen_slow_streams_keep_the_servers_memory_bounded(tiny: TinyHub, serve_process: ServeProcess) -> None:
    pid = serve_process.process.pid
    with Client(serve_process.address, timeout=600, home=tiny.home) as client:
        read_slowly(client, 0.0, 0.0)  # warm up: the model loaded, buffers and kernels allocated
        baseline = rss_mib(pid)
        peak = [baseline]
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak.append(rss_mib(pid))
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            with ThreadPoolExecutor(STREAMS) as pool:
                results = list(pool.map(lambda _: read_slowly(client, 3.0, 15.0), range(STREAMS)))
        finally:
            done.set()
            watcher.join()
    assert all(result.samples.shape == (64, 1, 8, 8) for _, result in results)
    growth = max(peak) - baseline
    assert growth < 24, f"the server grew by {growth:.0f} MiB serving {STREAMS} slow readers (baseline {baseline:.0f} MiB)"
