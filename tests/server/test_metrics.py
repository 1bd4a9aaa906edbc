"""Prometheus metrics: /metrics after known traffic moves each series by exactly that traffic."""

from __future__ import annotations

import json
import logging
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
from prometheus_client.parser import text_string_to_metric_families

from hub import auth, errors
from hub.client import Client, RemoteGeneration
from hub.metrics import Metrics
from hub.server.logs import JsonFormatter
from tests.server.harness import IMAGE_MODEL, REPO, TinyHub, running_server
from tests.server.oip import connect, inputs, status_of

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(address: str) -> Samples:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_move_by_exactly_the_traffic_sent(tiny: TinyHub, caplog: pytest.LogCaptureFixture, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = Metrics()
    model = {"model": IMAGE_MODEL, "version": str(tiny.hub.resolve(IMAGE_MODEL).version)}
    unresolved = {"model": "", "version": ""}
    address = metrics.serve("127.0.0.1:0")
    try:
        # a cost limit of 1,000 admits 2 passes x 2 rows x 64 values, not 20 passes x 2 rows x 64
        with running_server(tiny, metrics=metrics, max_request_cost=1000) as server, server.client(timeout=60) as client, \
                caplog.at_level(logging.INFO, logger="hub.access"):
            before = scrape(address)
            for seed in range(3):  # one after another: one sampling call (2 rows, 2 passes) each
                client.generate(IMAGE_MODEL, seed=seed, steps=2, num_samples=2)
            assert isinstance(list(client.stream_generate(IMAGE_MODEL, seed=9, steps=2))[-1], RemoteGeneration)
            with pytest.raises(errors.NotFound):
                client.generate("no-such-model", seed=1)
            with pytest.raises(errors.InvalidArgument, match="steps: "):  # refused while parsing: no version yet
                client.generate(IMAGE_MODEL, seed=1, steps=5000)
            with pytest.raises(errors.InvalidArgument, match="over the limit of 1,000"):  # refused at admission
                client.generate(IMAGE_MODEL, seed=1, steps=20, num_samples=2)
            refused_calls(server.address, tiny, tmp_path, monkeypatch)
            after = scrape(address)
    finally:
        metrics.close()
    assert delta(before, after, "genhub_requests_total", **model, code="OK") == 5
    assert delta(before, after, "genhub_requests_total", **unresolved, code="NOT_FOUND") == 1
    assert delta(before, after, "genhub_requests_total", **unresolved, code="INVALID_ARGUMENT") == 2
    assert delta(before, after, "genhub_requests_total", **unresolved, code="UNAUTHENTICATED") == 3
    assert delta(before, after, "genhub_requests_total", **model, code="INVALID_ARGUMENT") == 1
    assert delta(before, after, "genhub_request_duration_seconds_count", **model) == 6
    assert delta(before, after, "genhub_queue_duration_seconds_count", **model) == 5
    assert delta(before, after, "genhub_batch_samples_count", **model) == 5  # one sampling call each
    assert delta(before, after, "genhub_batch_samples_sum", **model) == 3 * 2 + 1 + 1
    assert delta(before, after, "genhub_step_duration_seconds_count", **model) == 5 * 2  # 2 network passes each
    assert after[("genhub_inflight_requests", frozenset(model.items()))] == 0
    assert after[("genhub_queue_cost", frozenset(model.items()))] == 0
    assert after[("genhub_loaded_models", frozenset())] == 1
    assert any(name == "process_cpu_seconds_total" for name, _ in after)  # the default process metrics

    # the access log (--log-format json): one JSON line per request, with what a log system needs
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "hub.access"]
    assert Counter(line["code"] for line in lines) == {"OK": 5, "NOT_FOUND": 1, "INVALID_ARGUMENT": 3, "UNAUTHENTICATED": 3}
    assert all(line["request_id"] and line["duration_s"] >= 0 for line in lines)
    ok = [line for line in lines if line["code"] == "OK"]
    assert all((line["model"], line["version"]) == (model["model"], model["version"]) and line["queue_s"] >= 0 for line in ok)


def refused_calls(address: str, tiny: TinyHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls refused before a request exists, each counted under model="" version="" (one open-protocol OK too):
    UNAUTHENTICATED x3 (Generate with no token, StreamGenerate with an unknown one, ModelInfer with none) and an
    open-protocol input refused while parsing (INVALID_ARGUMENT). A refused ListModels is no generation: not counted."""
    monkeypatch.delenv(auth.TOKEN_ENV, raising=False)
    with Client(address, timeout=60, home=tmp_path) as anonymous, pytest.raises(errors.Unauthenticated):
        anonymous.generate(IMAGE_MODEL, seed=1, steps=2)
    with Client(address, timeout=60, token="ghk_unknown") as unknown:
        with pytest.raises(errors.Unauthenticated):
            list(unknown.stream_generate(IMAGE_MODEL, seed=1, steps=2))
        with pytest.raises(errors.Unauthenticated):
            unknown.list_models()
    with connect(address) as no_token:
        assert status_of(lambda: no_token.infer(IMAGE_MODEL, inputs(seed=1)))[0] == "UNAUTHENTICATED"
    with connect(address, tiny.home) as client:
        assert client.infer(IMAGE_MODEL, inputs(seed=3, steps=2)).as_numpy("images").shape == (1, 8, 8, 1)
        bad = triton.InferInput("noise", [1], "FP32").set_data_from_numpy(np.zeros(1, np.float32))
        assert status_of(lambda: client.infer(IMAGE_MODEL, [bad]))[0] == "INVALID_ARGUMENT"


SERIES = ("genhub_requests_total", "genhub_request_duration_seconds", "genhub_queue_duration_seconds",
          "genhub_batch_samples", "genhub_step_duration_seconds", "genhub_queue_cost", "genhub_inflight_requests",
          "genhub_loaded_models")


def test_the_dashboard_charts_every_series_and_the_podmonitor_scrapes_a_declared_port() -> None:
    import yaml

    dashboard = json.loads((REPO / "deploy" / "grafana-dashboard.json").read_text())
    queries = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    assert [s for s in SERIES if s not in queries] == []
    exported = {family.name for family in Metrics().registry.collect()}  # what /metrics has (counters without _total)
    assert {s.removesuffix("_total") for s in SERIES} <= exported
    monitor = yaml.safe_load((REPO / "deploy" / "podmonitor.yaml").read_text())
    port = monitor["spec"]["podMetricsEndpoints"][0]["port"]
    service = next(d for d in yaml.safe_load_all((REPO / "deploy" / "rayservice.yaml").read_text()) if d["kind"] == "RayService")
    cluster = service["spec"]["rayClusterConfig"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        container = group["template"]["spec"]["containers"][0]
        assert {"containerPort": 8080, "name": port} in container["ports"]
        assert group["rayStartParams"]["metrics-export-port"] == "8080"
