"""GenerationService against a real in-process server and the tiny test family."""

from __future__ import annotations

import io
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from contextlib import contextmanager
from typing import Any, Iterator

import grpc
import pytest
import torch
from PIL import Image

from hub import errors
from hub.client import Client, RemoteGeneration, StepProgress, build_request
from hub.model import SampleRequest
from hub.server.app import BackgroundServer
from hub.v1 import generation_pb2, generation_pb2_grpc, types_pb2
from tests.server.harness import IMAGE_MODEL, POINTS_MODEL, TinyHub, running_server, wait_for, worker_state

SLOW = {"step_sleep_s": 0.02}
ATOL = 1e-5  # batched and unbatched convolutions may differ in the last bits
WORKER = f"{IMAGE_MODEL}:1"


@pytest.fixture
def client(server: BackgroundServer) -> Any:
    with server.client(timeout=30) as opened:
        yield opened


def in_process(tiny: TinyHub, seed: int, n: int, **fields: Any) -> torch.Tensor:
    request = SampleRequest.from_seed(seed, n, **fields)
    return tiny.hub.generate(IMAGE_MODEL, request, log=False).samples


def assert_still_serving(client: Client) -> None:
    assert client.generate(IMAGE_MODEL, num_samples=1, seed=1, steps=2).samples.shape == (1, 1, 8, 8)


@contextmanager
def busy_worker(client: Client) -> Iterator[None]:
    """Keep the model's worker sampling a long stream, so later requests queue up; cancel it on exit."""
    stream = client.stream_generate(IMAGE_MODEL, seed=0, steps=1000, params=SLOW)
    assert isinstance(next(stream), StepProgress)
    try:
        yield
    finally:
        stream.close()


def log_mark(tiny: TinyHub) -> datetime:
    """When the newest generation logged so far was created (ids come in per-process blocks: not in time order)."""
    tiny.hub.generation_log.flush()  # records still queued count as logged
    newest = tiny.hub.registry.generations(limit=1)
    return newest[0].created_at if newest else datetime.min.replace(tzinfo=timezone.utc)


def wait_logged(tiny: TinyHub, after: datetime, status: str, seed: int) -> Any:
    """The first generation of ``seed`` logged after ``after`` with ``status`` (waits for the background writer)."""

    def find() -> Any:
        logged = tiny.hub.registry.generations(limit=20)
        return next((g for g in logged if g.created_at > after and g.status == status and g.seed == seed), None)

    return wait_for(find, what=f"a generation logged as {status!r}")


def test_generate_returns_pngs_of_the_resolved_version_and_logs_it(tiny: TinyHub, client: Client) -> None:
    result = client.generate(IMAGE_MODEL, num_samples=3, seed=7, steps=4)
    version = tiny.hub.resolve(IMAGE_MODEL)
    assert result.samples.shape == (3, 1, 8, 8)
    assert result.model == f"{IMAGE_MODEL}:{version.version}" and result.digest == version.artifact_digest
    png = Image.open(io.BytesIO(result.response.images[0].png))
    assert png.size == (8, 8) and png.mode == "L"
    # the server's background log writer flushes within 200 ms (in this process or a Ray replica)
    logged = wait_for(lambda: {g.id: g for g in tiny.hub.registry.generations(limit=50)}.get(result.generation_id),
                      what=f"generation {result.generation_id} in the log")
    assert (logged.status, logged.seed, logged.num_samples) == ("ok", 7, 3)
    assert logged.params["steps"] == 4 and logged.ref == result.model


def test_images_match_in_process_generation_for_the_same_seed(tiny: TinyHub, client: Client) -> None:
    result = client.generate(IMAGE_MODEL, num_samples=4, seed=11, steps=5, class_label=3, format="tensor")
    expected = in_process(tiny, 11, 4, steps=5, class_labels=[3] * 4)
    torch.testing.assert_close(result.samples, expected, atol=ATOL, rtol=0)
    png = client.generate(IMAGE_MODEL, num_samples=4, seed=11, steps=5, class_label=3)
    assert (png.samples - expected).abs().max() <= 1 / 127.5 + 1e-6  # 8-bit quantisation only


def test_an_unset_seed_is_chosen_by_the_server_and_reproduces(client: Client) -> None:
    first = client.generate(IMAGE_MODEL, num_samples=2, steps=3, format="tensor")
    again = client.generate(IMAGE_MODEL, num_samples=2, steps=3, seed=first.seed, format="tensor")
    torch.testing.assert_close(first.samples, again.samples, atol=ATOL, rtol=0)


def test_typed_params_reach_the_family(client: Client) -> None:
    plain = client.generate(IMAGE_MODEL, seed=3, steps=3, format="tensor")
    sharp = client.generate(IMAGE_MODEL, seed=3, steps=3, format="tensor", params={"sharpen": True, "noise_scale": 0.05})
    assert not torch.allclose(plain.samples, sharp.samples)
    with pytest.raises(errors.InvalidArgument, match=r"params\[sharpen\]: must be true or false"):
        client.generate(IMAGE_MODEL, seed=3, steps=3, params={"sharpen": 1})


def test_point_models_return_raw_tensors_and_refuse_png(client: Client) -> None:
    result = client.generate(POINTS_MODEL, num_samples=5, seed=0, steps=3)
    tensor = result.response.images[0].tensor
    assert result.samples.shape == (5, 2) and list(tensor.shape) == [2] and tensor.dtype == types_pb2.DATA_TYPE_FLOAT32
    with pytest.raises(errors.InvalidArgument, match="format: .*2D points.*IMAGE_FORMAT_RAW_TENSOR"):
        client.generate(POINTS_MODEL, num_samples=1, seed=0, format="png")


def test_stream_reports_every_step_with_low_resolution_previews_then_the_result(client: Client) -> None:
    events = list(client.stream_generate(IMAGE_MODEL, num_samples=2, seed=5, steps=6, preview_every=2))
    progress, result = events[:-1], events[-1]
    # A reader slower than sampling gets the newest event, older ones coalesced; the last step always arrives.
    steps = [p.step for p in progress]
    assert steps == sorted(set(steps)) and steps[-1] == 6 and all(p.total == 6 for p in progress)
    assert all(p.step % 2 == 0 for p in progress if p.previews is not None) and progress[-1].previews is not None
    assert all(p.previews.shape == (2, 1, 8, 8) for p in progress if p.previews is not None)
    assert isinstance(result, RemoteGeneration) and result.samples.shape == (2, 1, 8, 8)


def test_batched_results_equal_unbatched_for_the_same_seeds(tiny: TinyHub, server: BackgroundServer) -> None:
    """Requests queued behind a busy worker are merged into one call; each keeps its own images."""
    asks = [dict(seed=1, num_samples=1, class_label=0), dict(seed=2, num_samples=3, class_label=5),
            dict(seed=3, num_samples=2, class_label=9)]
    with server.client(timeout=30) as client, ThreadPoolExecutor(8) as pool:
        with busy_worker(client):
            queued = [pool.submit(client.generate, IMAGE_MODEL, steps=4, format="tensor", **ask) for ask in asks]
            other = pool.submit(client.generate, IMAGE_MODEL, seed=4, steps=3, format="tensor")  # other steps: not merged
            wait_for(lambda: worker_state(server, WORKER)[0] == 4, what="four queued requests")
        results = [f.result() for f in queued]
    assert [r.batch_samples for r in results] == [6, 6, 6]
    assert other.result().batch_samples == 1
    for ask, result in zip(asks, results):
        expected = in_process(tiny, ask["seed"], ask["num_samples"], steps=4, class_labels=[ask["class_label"]] * ask["num_samples"])
        torch.testing.assert_close(result.samples, expected, atol=ATOL, rtol=0)
    alone = in_process(tiny, 4, 1, steps=3)
    torch.testing.assert_close(other.result().samples, alone, atol=ATOL, rtol=0)


def test_an_unsupported_field_is_invalid_argument_before_queueing(tiny: TinyHub, server: BackgroundServer) -> None:
    with server.client(timeout=30) as client, ThreadPoolExecutor(4) as pool:
        with busy_worker(client):
            good = pool.submit(client.generate, IMAGE_MODEL, seed=2, steps=4, class_label=1, format="tensor")
            wait_for(lambda: worker_state(server, WORKER)[0] == 1, what="one queued request")
            # answered while the worker is still busy: checked against the model's capabilities, never queued
            with pytest.raises(errors.InvalidArgument, match=r"class_label: labels \[99\] are out of range; they must be in \[0, 9\]"):
                client.generate(IMAGE_MODEL, seed=1, steps=4, class_label=99)
            with pytest.raises(errors.InvalidArgument, match="prompt: this model is not text-conditional"):
                client.generate(IMAGE_MODEL, seed=1, steps=4, prompt="a cat")
            assert worker_state(server, WORKER)[0] == 1
        torch.testing.assert_close(good.result().samples, in_process(tiny, 2, 1, steps=4, class_labels=[1]), atol=ATOL, rtol=0)


def test_a_cancelled_stream_stops_the_sampling_loop(tiny: TinyHub, server: BackgroundServer) -> None:
    model = tiny.model(IMAGE_MODEL)
    before = log_mark(tiny)
    with server.client() as client:
        stream = client.stream_generate(IMAGE_MODEL, seed=1, steps=500, params=SLOW)
        for event in stream:
            assert isinstance(event, StepProgress)
            if event.step == 3:
                break
        started_at = model.steps_taken
        stream.close()  # cancels the RPC
        logged = wait_logged(tiny, before, "cancelled", seed=1)  # logged once the sampling call has returned
        stopped_at = model.steps_taken
        time.sleep(0.3)
        assert model.steps_taken == stopped_at, "the sampling loop kept running after the client cancelled"
        assert stopped_at - started_at < 100 and logged.params["steps"] == 500  # stopped early, not at step 500
        assert_still_serving(client)


def test_cancelling_one_request_leaves_its_batch_mate_running(tiny: TinyHub, server: BackgroundServer) -> None:
    with server.client(timeout=30) as client, ThreadPoolExecutor(4) as pool:
        with busy_worker(client):
            stub = generation_pb2_grpc.GenerationServiceStub(client.channel)
            # 50 steps (1 s) together: a poll held up on a loaded machine still finds the pair running (20 steps,
            # 0.4 s, could end before the poll below saw them: it then waited in vain)
            doomed = stub.Generate.future(build_request(IMAGE_MODEL, seed=8, steps=50, params=SLOW, format="tensor"))
            kept = pool.submit(client.generate, IMAGE_MODEL, seed=9, steps=50, params=SLOW, format="tensor")
            wait_for(lambda: worker_state(server, WORKER)[0] == 2, what="two queued requests")
        wait_for(lambda: worker_state(server, WORKER)[1] == 2, what="the pair to run together")
        assert doomed.cancel(), "the pair finished before the cancellation"
        result = kept.result()
    assert result.batch_samples == 2
    # step_sleep_s only slows sampling down: the samples are those of the request without it
    torch.testing.assert_close(result.samples, in_process(tiny, 9, 1, steps=50), atol=ATOL, rtol=0)


def test_an_expired_deadline_answers_deadline_exceeded(tiny: TinyHub, server: BackgroundServer) -> None:
    model = tiny.model(IMAGE_MODEL)
    before = log_mark(tiny)
    with server.client() as client:
        # The channel connected, the model loaded and the reference resolved (cached for good: a version number) first:
        # the 0.3 s must run out while sampling. One that runs out before the engine admits the request (a slow
        # connection or registry read on a loaded machine) ends it unlogged, and wait_logged below would time out.
        client.generate(WORKER, seed=2, steps=1)
        with pytest.raises(errors.DeadlineExceeded):
            client.generate(WORKER, seed=1, steps=500, params=SLOW, timeout=0.3)
        wait_logged(tiny, before, "deadline", seed=1)
        stopped_at = model.steps_taken
        time.sleep(0.3)
        assert model.steps_taken == stopped_at, "the sampling loop kept running past the deadline"
        assert_still_serving(client)


def test_a_full_queue_answers_resource_exhausted_by_cost(tiny: TinyHub) -> None:
    # costs (passes x rows x 64 values): the running request 500 x 1 x 64 = 32,000; each 2-step one 128
    with running_server(tiny, max_request_cost=32_000, max_queued_cost=32_200) as server, server.client() as client:
        running = client.stream_generate(IMAGE_MODEL, seed=1, steps=500, params=SLOW)
        assert isinstance(next(running), StepProgress)  # now sampling; the queue is empty
        stub = generation_pb2_grpc.GenerationServiceStub(client.channel)
        waiting = stub.Generate.future(build_request(IMAGE_MODEL, seed=2, steps=2))
        wait_for(lambda: worker_state(server, WORKER)[0] == 1, what="one queued request")
        with pytest.raises(errors.ResourceExhausted, match=r"queue of tiny-digits:1 is full: 32,128 cost units admitted.*"
                                                           r"adds 128, the limit is 32,200; retry in a few seconds"):
            client.generate(IMAGE_MODEL, seed=3, steps=2)
        running.close()
        assert waiting.result(timeout=30).images  # the queued request still runs
        assert_still_serving(client)


def test_a_request_over_the_cost_limit_is_invalid_argument_naming_its_cost(tiny: TinyHub) -> None:
    with running_server(tiny, max_request_cost=1000) as server, server.client() as client:
        with pytest.raises(errors.InvalidArgument, match=r"num_samples: the request costs 8 passes x 4 rows x 64 values = 2,048 .*"
                                                         r"over the limit of 1,000 for tiny-digits:1; lower num_samples or steps"):
            client.generate(IMAGE_MODEL, seed=1, num_samples=4, steps=8)
        assert client.generate(IMAGE_MODEL, seed=1, num_samples=1, steps=8, format="tensor").samples.shape == (1, 1, 8, 8)  # 512: fits
        assert_still_serving(client)


def test_a_points_model_returns_4096_points_in_one_request(client: Client) -> None:
    result = client.generate(POINTS_MODEL, seed=3, num_samples=4096, steps=4, format="tensor")
    assert result.samples.shape == (4096, 2) and torch.isfinite(result.samples).all()


BAD_REQUESTS = [
    (dict(model=""), "model: is required"),
    (dict(model="no such:ref:at all"), "model: .*is not a model reference"),
    (dict(num_samples=65537), "num_samples: must be between 1 and 65536, got 65537"),
    (dict(steps=1001), "steps: must be between 1 and 1000"),
    (dict(seed=2**63), "seed: must be between 0 and 2\\^63-1"),
    (dict(eta=1.5), "eta: must be between 0 and 1, got 1.5"),
    (dict(guidance_scale=51.0), "guidance_scale: must be between 0 and 50, got 51"),
    (dict(truncation=-0.5), "truncation: must be between 0 and 1, got -0.5"),
    (dict(class_label=-1), "class_label: must be >= 0, got -1"),
    (dict(prompt="x" * 1001), "prompt: must be at most 1000 characters, got 1001"),
    (dict(params={f"k{i}": i for i in range(33)}), "params: at most 32 entries, got 33"),
    (dict(params={"nope": 1.0}), "params: unknown parameter.*nope.*known"),
    (dict(prompt="a cat"), "prompt: this model is not text-conditional"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_REQUESTS, ids=[m.split(":")[0] for _, m in BAD_REQUESTS])
def test_invalid_fields_answer_invalid_argument_naming_field_and_limit(client: Client, fields: dict[str, Any], message: str) -> None:
    stub = generation_pb2_grpc.GenerationServiceStub(client.channel)
    fields = {"model": IMAGE_MODEL, "steps": 2, **fields}
    with pytest.raises(grpc.RpcError) as raised:
        stub.Generate(build_request(**fields), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(message, raised.value.details()), raised.value.details()
    assert_still_serving(client)


def test_invalid_preview_every_and_empty_param_values_are_rejected(client: Client) -> None:
    stub = generation_pb2_grpc.GenerationServiceStub(client.channel)
    request = generation_pb2.StreamGenerateRequest(request=build_request(IMAGE_MODEL), preview_every=1001)
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.StreamGenerate(request, timeout=30))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "preview_every" in raised.value.details()
    empty = build_request(IMAGE_MODEL)
    empty.params["step_sleep_s"].SetInParent()  # a ParamValue with no kind set
    with pytest.raises(grpc.RpcError) as raised:
        stub.Generate(empty, timeout=30)
    assert "params[step_sleep_s]: no value set" in raised.value.details()


def test_unknown_models_and_samplers_answer_not_found(client: Client) -> None:
    with pytest.raises(errors.NotFound, match="no-such-model"):
        client.generate("no-such-model")
    with pytest.raises(errors.NotFound):
        client.generate(f"{IMAGE_MODEL}:99")
    with pytest.raises(errors.NotFound, match="no sampler named 'warp'"):
        client.generate(IMAGE_MODEL, sampler="warp")
    assert_still_serving(client)


def test_concurrent_clients_all_get_their_own_images(tiny: TinyHub, client: Client) -> None:
    # Each call lasts at least 3 x 20 ms of sleep, not 3 steps of compute: however fast the machine, requests sent
    # together arrive while one samples and share the next call (also on Ray, where the queue cannot be read).
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda s: client.generate(IMAGE_MODEL, seed=s, steps=3, params=SLOW, format="tensor"),
                                range(16)))
    expected = in_process(tiny, 0, 1, steps=3)
    torch.testing.assert_close(results[0].samples, expected, atol=ATOL, rtol=0)
    assert len({r.samples.sum().item() for r in results}) == 16
    assert max(r.batch_samples for r in results) > 1  # some were batched
