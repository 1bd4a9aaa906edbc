"""Routing by task and latency budget over gRPC, model cards in GetModel, and metric details.

A hub of its own (not the session one): three tiny ``digits`` versions with recorded figures
of different speed and quality, so routing in the other tests' hub stays unaffected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest

from hub import errors
from hub.client import Client, RemoteGeneration, StepProgress, build_request
from hub.v1 import generation_pb2, generation_pb2_grpc
from tests.server.harness import TinyHub, open_tiny_hub, record_figures, register_trained, running_server

LATENCY = "latency_p50_ms_batch1"


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TinyHub, Client]]:
    """slow-good (fd 12, 120 ms, euler 6 steps), fast-rough (fd 40, 8 ms, default sampler, 1 step)
    and cond-digits (class-conditional, fd 30, 60 ms, 3 steps), all trained on digits."""
    tiny = open_tiny_hub(Path(tmp_path_factory.mktemp("genhub-routing")), bundled=False)
    hub = tiny.hub
    slow = register_trained(hub, "slow-good", "digits").ref
    fast = register_trained(hub, "fast-rough", "digits").ref
    cond = register_trained(hub, "cond-digits", "digits").ref
    record_figures(hub, slow, fd=12.0, latency=120.0, sampler="euler", steps=6)
    record_figures(hub, fast, fd=40.0, latency=8.0, sampler=None, steps=1)
    record_figures(hub, cond, fd=30.0, latency=60.0, sampler=None, steps=3, conditional=True)
    try:
        with running_server(tiny) as server, server.client(timeout=30) as client:
            yield tiny, client
    finally:
        tiny.hub.close()


def test_a_task_routes_to_the_best_version_that_fits_and_says_why(routed: tuple[TinyHub, Client]) -> None:
    tiny, client = routed
    best = client.generate(task="digits", latency_budget_ms=500, seed=3, num_samples=2)
    assert best.model == "slow-good:1" and best.digest == tiny.hub.resolve("slow-good:1").artifact_digest
    assert (best.sampler, best.steps) == ("euler", 6)  # the settings its latency was measured with
    assert best.routed_reason.startswith("routed to slow-good:1 (euler sampler, 6 steps): p50 120.0 ms")
    assert best.samples.shape == (2, 1, 8, 8)
    tiny.hub.generation_log.flush()
    logged = {g.id: g for g in tiny.hub.registry.generations(limit=20)}[best.generation_id]
    assert logged.ref == "slow-good:1" and logged.params["steps"] == 6 and logged.params["sampler"] == "euler"

    fast = client.generate(task="digits", latency_budget_ms=50, seed=3)
    assert (fast.model, fast.sampler, fast.steps) == ("fast-rough:1", "", 1)
    assert "p50 8.0 ms" in fast.routed_reason and "best of 1 fitting the budget" in fast.routed_reason

    named = client.generate("slow-good:1", seed=3, steps=2)  # naming a model: no routing
    assert (named.routed_reason, named.sampler, named.steps) == ("", "", 2)


def test_the_request_s_own_settings_win_over_the_routed_ones(routed: tuple[TinyHub, Client]) -> None:
    _, client = routed
    result = client.generate(task="digits", latency_budget_ms=500, seed=1, steps=2)
    assert (result.model, result.sampler, result.steps) == ("slow-good:1", "euler", 2)


def test_stream_generate_routes_too(routed: tuple[TinyHub, Client]) -> None:
    _, client = routed
    events = list(client.stream_generate(task="digits", latency_budget_ms=50, seed=5))
    assert [e.step for e in events if isinstance(e, StepProgress)] == [1]  # fast-rough's 1 step
    result = events[-1]
    assert isinstance(result, RemoteGeneration) and result.model == "fast-rough:1" and result.routed_reason


def test_a_condition_routes_to_a_conditional_version_and_becomes_the_class_label(routed: tuple[TinyHub, Client]) -> None:
    tiny, client = routed
    result = client.generate(task="digits", condition="7", latency_budget_ms=500, seed=2)
    assert result.model == "cond-digits:1" and result.steps == 3
    tiny.hub.generation_log.flush()
    logged = {g.id: g for g in tiny.hub.registry.generations(limit=20)}[result.generation_id]
    assert logged.params["class_labels"] == [7]
    same = client.generate(task="digits", condition="7", class_label=7, latency_budget_ms=500, seed=2)
    assert same.model == "cond-digits:1"
    assert client.generate(task="digits", class_label=4, latency_budget_ms=500, seed=2).model == "cond-digits:1"
    with pytest.raises(errors.InvalidArgument, match="class_label: is 3 but task.condition '7' is class 7"):
        client.generate(task="digits", condition="7", class_label=3, latency_budget_ms=500)
    with pytest.raises(errors.InvalidArgument, match="task.condition: class 12 is out of range"):
        client.generate(task="digits", condition="12", latency_budget_ms=500)
    with pytest.raises(errors.NotFound, match="fastest is cond-digits:1 at 60.0 ms"):
        client.generate(task="digits", condition="7", latency_budget_ms=30)


def test_a_budget_nothing_fits_is_not_found_naming_the_fastest_latency(routed: tuple[TinyHub, Client]) -> None:
    _, client = routed
    stub = generation_pb2_grpc.GenerationServiceStub(client.channel)
    request = build_request(task="digits", latency_budget_ms=5)
    for call in (lambda: stub.Generate(request, timeout=30),
                 lambda: list(stub.StreamGenerate(generation_pb2.StreamGenerateRequest(request=request), timeout=30))):
        with pytest.raises(grpc.RpcError) as raised:
            call()
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        assert "the fastest is fast-rough:1 at 8.0 ms p50" in raised.value.details()
        assert "at least 8 ms" in raised.value.details()
    with pytest.raises(errors.NotFound, match="no registered version is trained on 'gmm-grid25'"):
        client.generate(task="gmm-grid25", latency_budget_ms=100)
    with pytest.raises(errors.NotFound, match="no dataset 'nope'"):
        client.generate(task="nope", latency_budget_ms=100)


BAD_ROUTING = [
    (dict(model="slow-good", task="digits", latency_budget_ms=50), "model, task: give exactly one of them"),
    (dict(), "model: is required; name a model as NAME, NAME:VERSION or NAME@ALIAS, or leave it empty and route by task"),
    (dict(task="digits"), "latency_budget_ms: is required with task"),
    (dict(model="slow-good", latency_budget_ms=50), "latency_budget_ms: applies only to task requests"),
    (dict(task="digits", latency_budget_ms=0), "latency_budget_ms: must be a positive, finite number"),
    (dict(task="digits", latency_budget_ms=float("inf")), "latency_budget_ms: must be a positive, finite number"),
    (dict(task="", latency_budget_ms=50), "task.dataset: is required"),
    (dict(task="d" * 257, latency_budget_ms=50), "task.dataset: must be at most 256 characters"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_ROUTING, ids=[m.split(":")[1].strip()[:24] for _, m in BAD_ROUTING])
def test_bad_routing_fields_are_invalid_argument_naming_them(routed: tuple[TinyHub, Client], fields: dict[str, Any],
                                                              message: str) -> None:
    _, client = routed
    stub = generation_pb2_grpc.GenerationServiceStub(client.channel)
    request = build_request(**fields)
    for call in (lambda: stub.Generate(request, timeout=30),
                 lambda: list(stub.StreamGenerate(generation_pb2.StreamGenerateRequest(request=request), timeout=30))):
        with pytest.raises(grpc.RpcError) as raised:
            call()
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert raised.value.details().startswith(message), raised.value.details()


def test_get_model_renders_a_card_for_versions_without_one(routed: tuple[TinyHub, Client]) -> None:
    _, client = routed
    version = client.get_model("slow-good").versions[0]
    assert version.card.startswith("# slow-good:1")
    assert "A `tiny` model trained on `digits`." in version.card and "tests: slow-good" in version.card  # the command
    assert "| fd | 12 |" in version.card
    assert client.list_versions("slow-good")[0].card == version.card
    registered = client.get_model("tiny-digits").versions[0]
    assert registered.card.startswith("# tiny-digits\n\nA tiny test model.")  # the version's own card wins


def test_metrics_carry_their_details_and_creation_time(routed: tuple[TinyHub, Client]) -> None:
    tiny, client = routed
    metrics = {m.name: m for m in client.get_model("slow-good").versions[0].metrics}
    assert json.loads(metrics["fd"].details_json) == {"dims": 16, "feature": "tiny-classifier"}
    assert json.loads(metrics[LATENCY].details_json) == {"p90_ms": 180.0}
    recorded = {m.name: m for m in tiny.hub.registry.metrics("slow-good:1")}
    for name, metric in metrics.items():
        assert metric.create_time.seconds > 0
        assert metric.create_time.ToDatetime() == recorded[name].created_at.replace(tzinfo=None)
    bare = client.get_model("tiny-digits").versions[0].metrics[0]  # recorded with no details
    assert bare.details_json == "{}" and bare.create_time.seconds > 0


@pytest.mark.parametrize("where", ["server", "in-process"])
def test_cli_generate_routes_by_task(routed: tuple[TinyHub, Client], tmp_path: Path, where: str) -> None:
    from click.testing import CliRunner

    from hub.cli import cli
    from hub.plugins import load_plugins
    from tests.server import tiny_family

    tiny, client = routed
    out = tmp_path / "grid.png"
    place = ["--server", client.address] if where == "server" else []
    args = ["--db", tiny.db_url, "--home", str(tiny.home), "generate", "--task", "digits", "--budget-ms", "50",
            "-n", "2", "-o", str(out), *place]
    result = CliRunner().invoke(cli, args, obj=load_plugins([("tinyfamily", tiny_family)]))
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # rich wraps long lines
    assert "samples from fast-rough:1" in said and "routed to fast-rough:1" in said and out.exists()
    both = CliRunner().invoke(cli, ["--db", tiny.db_url, "--home", str(tiny.home), "generate", "slow-good", "--task",
                                    "digits", "--budget-ms", "50", *place], obj=load_plugins([("tinyfamily", tiny_family)]))
    assert isinstance(both.exception, errors.InvalidArgument) and "give exactly one" in str(both.exception)  # main() prints it
