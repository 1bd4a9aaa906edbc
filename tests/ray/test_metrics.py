"""The genhub series the Ray ingress and replicas record (ray.serve.metrics), scraped from Ray's own metrics port.

Ray exports them as ``ray_genhub_*``, with labels of its own (worker, replica, deployment...) beside ours: a
series here is the sum over every sample whose labels include the ones asked for.
"""

from __future__ import annotations

import time
import urllib.request
from typing import Callable

import numpy as np
import pytest
import tritonclient.grpc as triton
from prometheus_client.parser import text_string_to_metric_families

from hub import errors
from hub.client import Client, RemoteGeneration
from hub.ray.runner import METRICS_REPORT_MS
from tests.ray.test_inference_protocol import TIMEOUT
from tests.server.harness import IMAGE_MODEL, TinyHub
from tests.server.oip import connect, inputs, status_of

Samples = list[tuple[str, dict[str, str], float]]
BOUND_S = 60.0  # a report reaches the agent within a few report intervals; this only bounds a failure


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    ours = "\n".join(line for line in text.splitlines() if "genhub_" in line)  # not Ray's own thousands of lines
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(ours) for s in family.samples]


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(value for n, have, value in samples if n == name and labels.items() <= have.items())


def settled(port: int, read: Callable[[Samples], tuple[float, ...]]) -> Samples:
    """A scrape after which nothing older is still on its way: equal to one taken two report intervals earlier."""
    previous = scrape(port)
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        time.sleep(2.2 * METRICS_REPORT_MS / 1000)
        current = scrape(port)
        if read(current) == read(previous):
            return current
        previous = current
    raise AssertionError(f"Ray's metrics kept moving for {BOUND_S:.0f} s with no traffic")


def test_ray_exports_the_genhub_series_moved_by_exactly_the_traffic_sent(ray_app: str, ray_metrics_port: int,
                                                                         tiny: TinyHub) -> None:
    model = {"model": IMAGE_MODEL, "version": str(tiny.hub.resolve(IMAGE_MODEL).version)}
    unresolved = {"model": "", "version": ""}
    expected = {  # (series, labels): how much the traffic below moves it
        ("ray_genhub_requests_total", (("code", "OK"), *model.items())): 3,
        ("ray_genhub_requests_total", (("code", "NOT_FOUND"), *unresolved.items())): 1,
        ("ray_genhub_requests_total", (("code", "INVALID_ARGUMENT"), *unresolved.items())): 2,
        ("ray_genhub_requests_total", (("code", "UNAUTHENTICATED"), *unresolved.items())): 2,
        ("ray_genhub_request_duration_seconds_count", tuple(model.items())): 3,  # the ingress
        ("ray_genhub_batch_samples_count", tuple(model.items())): 3,  # the replica: one sampling call each
        ("ray_genhub_step_duration_seconds_count", tuple(model.items())): 3 * 2,  # 2 network passes each
    }

    def read(samples: Samples) -> tuple[float, ...]:
        return tuple(total(samples, name, **dict(labels)) for name, labels in expected)

    before = read(settled(ray_metrics_port, read))
    with Client(ray_app, timeout=120) as client:
        for seed in range(2):
            client.generate(IMAGE_MODEL, seed=seed, steps=2)
        assert isinstance(list(client.stream_generate(IMAGE_MODEL, seed=9, steps=2))[-1], RemoteGeneration)
        with pytest.raises(errors.NotFound):
            client.generate("no-such-model", seed=1)
        with pytest.raises(errors.InvalidArgument, match="steps: "):  # refused while parsing: no version yet
            client.generate(IMAGE_MODEL, seed=1, steps=5000)
    with Client(ray_app, timeout=60, token="ghk_unknown") as unknown, pytest.raises(errors.Unauthenticated):
        unknown.generate(IMAGE_MODEL, seed=1, steps=2)
    with connect(ray_app) as no_token:  # the open inference protocol: refused for want of a token, then while parsing
        assert status_of(lambda: no_token.infer(IMAGE_MODEL, inputs(seed=1), headers=dict(TIMEOUT)))[0] == "UNAUTHENTICATED"
    with connect(ray_app, tiny.home) as oip:
        bad = triton.InferInput("noise", [1], "FP32").set_data_from_numpy(np.zeros(1, np.float32))
        assert status_of(lambda: oip.infer(IMAGE_MODEL, [bad], headers=dict(TIMEOUT)))[0] == "INVALID_ARGUMENT"
    want = tuple(before[i] + moved for i, moved in enumerate(expected.values()))
    deadline = time.monotonic() + BOUND_S
    while (after := read(scrape(ray_metrics_port))) != want and time.monotonic() < deadline:
        if any(a > w for a, w in zip(after, want)):
            break  # moved too far: waiting cannot fix it
        time.sleep(0.5)
    assert dict(zip(expected, after)) == dict(zip(expected, want))
