"""Load and deadlines on the Ray backend: the handle queue limit, and client timeouts that reach the replicas."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import grpc
import pytest

from hub import errors
from hub.client import Client, build_request
from hub.server import convert
from hub.v1 import generation_pb2, generation_pb2_grpc
from tests.ray.conftest import QUEUE_MODEL
from tests.server.harness import IMAGE_MODEL, TinyHub, wait_for
from tests.server.test_generation import log_mark

SLOW = {"step_sleep_s": 0.05}
LONG = 1000  # steps: 50 s at SLOW; every stop below happens far earlier


def stopped_at(tiny: TinyHub, after: datetime, statuses: tuple[str, ...], timeout: float = 30) -> tuple[str, int]:
    """Status and step of the first generation logged after ``after`` as stopped (waits for it)."""

    def find() -> Any:
        return next((g for g in tiny.hub.registry.generations(limit=20) if g.created_at > after and g.status in statuses), None)

    record = wait_for(find, timeout=timeout, what=f"a generation logged as one of {statuses}")
    if record.status == "ok":
        return record.status, LONG
    match = re.search(r"at step (\d+) of (\d+)", record.error or "")
    assert match, f"the log does not say where sampling stopped: {record.error!r}"
    assert int(match.group(2)) == LONG
    return record.status, int(match.group(1))


def test_a_full_handle_queue_answers_resource_exhausted_naming_the_limit(ray_app: str) -> None:
    callers = 6  # one sampling, one queued (max_queued_requests=1), the rest over the limit
    with Client(ray_app, timeout=60) as client, ThreadPoolExecutor(callers) as pool:
        futures = [pool.submit(client.generate, QUEUE_MODEL, seed=i, steps=40, params=SLOW) for i in range(callers)]
        outcomes: list[Any] = []
        for future in futures:
            try:
                outcomes.append(future.result(timeout=90))  # TimeoutError here: a caller hung
            except errors.GenhubError as exc:
                outcomes.append(exc)
    rejected = [o for o in outcomes if isinstance(o, BaseException)]
    assert rejected and len(rejected) < callers, outcomes
    for exc in rejected:
        assert isinstance(exc, errors.ResourceExhausted), repr(exc)
        assert QUEUE_MODEL in str(exc) and "max_queued_requests=1" in str(exc), str(exc)
    with Client(ray_app, timeout=60) as client:  # the queue drains: the model serves again
        assert client.generate(QUEUE_MODEL, seed=9, steps=2).samples.shape == (1, 1, 8, 8)


def test_the_timeout_metadata_alone_stops_sampling_on_the_replica(tiny: TinyHub, ray_app: str) -> None:
    """No gRPC deadline at all: only the replica can answer DEADLINE_EXCEEDED, and only by stopping early."""
    with Client(ray_app) as client:
        client.generate(IMAGE_MODEL, seed=5, steps=1)  # the replica has the model loaded: the deadline is all sampling
        before = log_mark(tiny)
        stub = generation_pb2_grpc.GenerationServiceStub(client.channel)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as raised:
            stub.Generate(build_request(IMAGE_MODEL, seed=5, steps=LONG, params=SLOW), timeout=120,
                          metadata=[(convert.TIMEOUT_METADATA, "1000")])
        elapsed = time.monotonic() - started
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, raised.value.details()
    assert "deadline passed at step" in raised.value.details()
    assert elapsed < 30, f"the replica ran {elapsed:.0f} s past a 1 s deadline"
    status, step = stopped_at(tiny, before, ("deadline",))
    assert step < LONG // 2


def test_a_client_timeout_on_a_stream_reaches_the_replica(tiny: TinyHub, ray_app: str) -> None:
    with Client(ray_app) as client:
        # Connected through the proxy and the model loaded on the replica first: the 1.5 s must run out while
        # sampling, after a first progress event, even when a loaded machine makes the first call slow.
        client.generate(IMAGE_MODEL, seed=6, steps=1)
        before = log_mark(tiny)
        steps = 0
        with pytest.raises(errors.DeadlineExceeded):
            for _ in client.stream_generate(IMAGE_MODEL, seed=6, steps=LONG, params=SLOW, timeout=1.5):
                steps += 1
    assert 0 < steps < LONG
    # Whichever comes first stops it: the replica's own deadline, or the proxy cancelling the call.
    status, step = stopped_at(tiny, before, ("deadline", "cancelled"))
    assert step < LONG // 2, f"the replica sampled {step} of {LONG} steps after a 1.5 s timeout ({status})"


@pytest.mark.parametrize("value", ["soon", "-5", "0", "nan"])
def test_invalid_timeout_metadata_is_invalid_argument(ray_app: str, value: str) -> None:
    with Client(ray_app, timeout=60) as client:
        stub = generation_pb2_grpc.GenerationServiceStub(client.channel)
        metadata = [(convert.TIMEOUT_METADATA, value)]
        request = build_request(IMAGE_MODEL, seed=1, steps=2)
        with pytest.raises(grpc.RpcError) as unary:
            stub.Generate(request, timeout=60, metadata=metadata)
        with pytest.raises(grpc.RpcError) as stream:
            list(stub.StreamGenerate(generation_pb2.StreamGenerateRequest(request=request), timeout=60, metadata=metadata))
    for raised in (unary, stream):
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert convert.TIMEOUT_METADATA in raised.value.details() and repr(value) in raised.value.details()


def test_timeout_metadata_round_trips() -> None:
    key, value = convert.timeout_metadata(1.5)
    assert (key, value) == ("genhub-timeout-ms", "1500")
    assert convert.parse_timeout([("other", "x"), (key, value)]) == 1.5
    assert convert.parse_timeout([(key, b"250")]) == 0.25
    assert convert.parse_timeout([("other", "x")]) is None
    assert convert.timeout_metadata(0.0001)[1] == "1"  # rounded up: never shorter than the real deadline
    with pytest.raises(errors.InvalidArgument, match="genhub-timeout-ms: .*positive number of milliseconds.*'inf'"):
        convert.parse_timeout([(key, "inf")])


@pytest.mark.parametrize("attempt", range(3))  # was flaky: run it several times in the same session
def test_a_cancelled_stream_stops_the_replicas_sampling(tiny: TinyHub, ray_app: str, attempt: int) -> None:
    before = log_mark(tiny)
    with Client(ray_app) as client:
        stream = client.stream_generate(IMAGE_MODEL, seed=10 + attempt, steps=LONG, params=SLOW)
        for event in stream:
            if event.step == 3:
                break
        stream.close()  # cancels the RPC
        statuses = ("cancelled", "deadline", "ok", "error")  # anything but "cancelled" fails below, with the reason
        status, step = stopped_at(tiny, before, statuses, timeout=LONG * SLOW["step_sleep_s"] + 30)
    assert status == "cancelled" and step < LONG // 2, f"the replica went on to step {step} of {LONG} ({status})"
