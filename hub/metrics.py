"""Prometheus metrics of a genhub server.

The engine reports what it does through ``EngineObserver`` (``MetricsObserver`` turns passes, queue changes
and outcomes into series); the transport reports each generation RPC once (``request``: its code and time).
Both backends record the same series into a sink: ``Metrics`` (prometheus-client, a registry of its own per
server; ``genhub serve --metrics-address HOST:PORT`` serves it at ``/metrics``) or, in Ray Serve replicas and
the ingress, ``RayMetrics`` (``ray.serve.metrics``, which Ray exports on each node's metrics port).

Series (labels ``model`` and ``version``; ``code`` for requests: the gRPC status name):
genhub_requests_total, genhub_request_duration_seconds, genhub_queue_duration_seconds, genhub_batch_samples
(rows per network pass, or samples per whole sampling call), genhub_step_duration_seconds (one network pass),
genhub_queue_cost (admitted, unfinished cost: the units of admission), genhub_inflight_requests,
genhub_loaded_models, plus the default process metrics. Label values come from the registry only (a request
that never resolved to a version counts under model="" version=""), so hostile names cannot grow the series.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterator, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from hub.engine.jobs import EngineObserver, Job
from hub.server.status import status_for

access_log = logging.getLogger("hub.access")  # one record per generation request (JSON lines: hub.server.logs)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
STEP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SAMPLE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
MODEL_LABELS = ("model", "version")
GENERATION_METHODS = frozenset({  # the RPCs genhub_requests_total counts, refused ones included
    "/hub.v1.GenerationService/Generate", "/hub.v1.GenerationService/StreamGenerate",
    "/inference.GRPCInferenceService/ModelInfer"})
HELP = {
    "genhub_requests": "Generation requests finished, by gRPC status code",
    "genhub_request_duration_seconds": "Generation request time, arrival to answer",
    "genhub_queue_duration_seconds": "Time a request waited before its first network pass",
    "genhub_batch_samples": "Rows of one network pass (samples of one whole sampling call)",
    "genhub_step_duration_seconds": "Time of one network pass",
    "genhub_queue_cost": "Cost admitted and unfinished (network passes x rows x values, as admission counts)",
    "genhub_inflight_requests": "Requests admitted and unfinished (waiting or sampling)",
    "genhub_loaded_models": "Model weights loaded for serving",
}


def split_ref(ref: str) -> tuple[str, str]:
    """("name", "3") from "name:3" (an engine lane's name); ("name", "") when it names no version."""
    name, _, version = ref.partition(":")
    return name, version if version.isdigit() else ""


class Sink(Protocol):
    """Where series are recorded: ``Metrics`` (prometheus-client) or ``RayMetrics`` (ray.serve.metrics)."""

    def request_done(self, model: str, version: str, code: str, seconds: float) -> None: ...
    def queue_wait(self, model: str, version: str, seconds: float) -> None: ...
    def network_pass(self, model: str, version: str, rows: int, seconds: float, passes: int) -> None: ...
    def queue(self, model: str, version: str, cost: int, inflight: int) -> None: ...
    def loaded(self, count: int) -> None: ...


class Metrics:
    """The genhub series of one server, in a prometheus-client registry of their own."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=r)
        self.requests = Counter("genhub_requests", HELP["genhub_requests"], (*MODEL_LABELS, "code"), registry=r)
        self.request_duration = self._histogram("genhub_request_duration_seconds", LATENCY_BUCKETS)
        self.queue_duration = self._histogram("genhub_queue_duration_seconds", LATENCY_BUCKETS)
        self.batch_samples = self._histogram("genhub_batch_samples", SAMPLE_BUCKETS)
        self.step_duration = self._histogram("genhub_step_duration_seconds", STEP_BUCKETS)
        self.queue_cost = Gauge("genhub_queue_cost", HELP["genhub_queue_cost"], MODEL_LABELS, registry=r)
        self.inflight = Gauge("genhub_inflight_requests", HELP["genhub_inflight_requests"], MODEL_LABELS, registry=r)
        self.loaded_models = Gauge("genhub_loaded_models", HELP["genhub_loaded_models"], registry=r)
        self._server: Any = None

    def _histogram(self, name: str, buckets: tuple[float, ...]) -> Histogram:
        return Histogram(name, HELP[name], MODEL_LABELS, buckets=buckets, registry=self.registry)

    def request_done(self, model: str, version: str, code: str, seconds: float) -> None:
        self.requests.labels(model, version, code).inc()
        self.request_duration.labels(model, version).observe(seconds)

    def queue_wait(self, model: str, version: str, seconds: float) -> None:
        self.queue_duration.labels(model, version).observe(seconds)

    def network_pass(self, model: str, version: str, rows: int, seconds: float, passes: int) -> None:
        self.batch_samples.labels(model, version).observe(rows)
        step = self.step_duration.labels(model, version)
        for _ in range(passes):  # a whole sampling call: its mean pass time, once per pass
            step.observe(seconds / passes)

    def queue(self, model: str, version: str, cost: int, inflight: int) -> None:
        self.queue_cost.labels(model, version).set(cost)
        self.inflight.labels(model, version).set(inflight)

    def loaded(self, count: int) -> None:
        self.loaded_models.set(count)

    def serve(self, address: str) -> str:
        """Serve ``/metrics`` on ``HOST:PORT`` (port 0: any free port) in a daemon thread; returns the bound address."""
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"metrics address {address!r} is not HOST:PORT; use e.g. 127.0.0.1:9464")
        server, thread = start_http_server(int(port), addr=host.strip("[]"), registry=self.registry)
        self._server = (server, thread)
        return f"{host}:{server.server_port}"

    def close(self) -> None:
        if self._server is not None:
            server, thread = self._server
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            self._server = None


class RayMetrics:
    """The same series as ``Metrics``, recorded through ``ray.serve.metrics`` (in a Serve replica or the ingress).

    Ray exports them on each node's metrics port with a ``ray_`` prefix (``ray_genhub_requests_total``);
    deploy/podmonitor.yaml has Prometheus scrape them and deploy/grafana-dashboard.json matches both spellings.
    """

    def __init__(self) -> None:
        from ray.serve import metrics as m

        def histogram(name: str, buckets: tuple[float, ...]) -> Any:
            return m.Histogram(name, HELP[name], boundaries=list(buckets), tag_keys=MODEL_LABELS)

        self.requests = m.Counter("genhub_requests", HELP["genhub_requests"], tag_keys=(*MODEL_LABELS, "code"))
        self.request_duration = histogram("genhub_request_duration_seconds", LATENCY_BUCKETS)
        self.queue_duration = histogram("genhub_queue_duration_seconds", LATENCY_BUCKETS)
        self.batch_samples = histogram("genhub_batch_samples", SAMPLE_BUCKETS)
        self.step_duration = histogram("genhub_step_duration_seconds", STEP_BUCKETS)
        self.queue_cost = m.Gauge("genhub_queue_cost", HELP["genhub_queue_cost"], tag_keys=MODEL_LABELS)
        self.inflight = m.Gauge("genhub_inflight_requests", HELP["genhub_inflight_requests"], tag_keys=MODEL_LABELS)
        self.loaded_models = m.Gauge("genhub_loaded_models", HELP["genhub_loaded_models"])

    def request_done(self, model: str, version: str, code: str, seconds: float) -> None:
        self.requests.inc(tags={"model": model, "version": version, "code": code})
        self.request_duration.observe(seconds, tags={"model": model, "version": version})

    def queue_wait(self, model: str, version: str, seconds: float) -> None:
        self.queue_duration.observe(seconds, tags={"model": model, "version": version})

    def network_pass(self, model: str, version: str, rows: int, seconds: float, passes: int) -> None:
        tags = {"model": model, "version": version}
        self.batch_samples.observe(rows, tags=tags)
        for _ in range(passes):
            self.step_duration.observe(seconds / passes, tags=tags)

    def queue(self, model: str, version: str, cost: int, inflight: int) -> None:
        self.queue_cost.set(cost, tags={"model": model, "version": version})
        self.inflight.set(inflight, tags={"model": model, "version": version})

    def loaded(self, count: int) -> None:
        self.loaded_models.set(count)


class MetricsObserver(EngineObserver):
    """The engine's passes, queues and outcomes as series (a lane is named after its version: "model:version")."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def on_pass(self, lane: str, rows: int, requests: int, seconds: float, passes: int = 1) -> None:
        self.sink.network_pass(*split_ref(lane), rows, seconds, passes)

    def on_queue(self, lane: str, queued_cost: int, queued: int, active: int) -> None:
        self.sink.queue(*split_ref(lane), queued_cost, queued + active)

    def on_outcome(self, job: Job) -> None:
        if job.started_at is not None and job.outcome is not None:  # it reached a network pass
            self.sink.queue_wait(*split_ref(job.name), job.outcome.queue_s)


class Request:
    """One generation RPC being timed; ``resolved`` names the version once the request found it."""

    def __init__(self, request_id: str = "") -> None:
        self.request_id = request_id[:128] or uuid.uuid4().hex[:16]
        self.model = self.version = ""
        self.queue_s: float | None = None  # set once the engine ran it
        self.started = time.perf_counter()

    def resolved(self, version: Any) -> None:
        self.model, self.version = version.model, str(version.version)


@contextmanager
def request(sink: Sink | None, request_id: str = "") -> Iterator[Request]:
    """Time a generation RPC and count it under the gRPC status name it ends with (OK, NOT_FOUND, CANCELLED...);
    one access-log record for it (``request_id``: the caller's, else a new one)."""
    timed = Request(request_id)
    code = "OK"
    try:
        yield timed
    except (asyncio.CancelledError, GeneratorExit):
        code = "CANCELLED"
        raise
    except BaseException as exc:
        code = status_for(exc)[0].name
        raise
    finally:
        _done(sink, timed, code)


def caller_request_id(metadata: Any) -> str:
    """The caller's ``x-request-id`` metadata ("" when it sent none: the access log makes one up)."""
    return next((str(value) for key, value in metadata or () if key == "x-request-id"), "")


def refused(sink: Sink | None, method: str, exc: BaseException, request_id: str = "") -> None:
    """Count a call that the token check refused before its handler ran, if ``method`` is a generation RPC."""
    if method in GENERATION_METHODS:
        _done(sink, Request(request_id), status_for(exc)[0].name)


def _done(sink: Sink | None, timed: Request, code: str) -> None:
    seconds = time.perf_counter() - timed.started
    if sink is not None:
        sink.request_done(timed.model, timed.version, code, seconds)
    access_log.info("%s %s:%s %s in %.1f ms", timed.request_id, timed.model or "-", timed.version or "-", code,
                    seconds * 1000, extra={"request_id": timed.request_id, "model": timed.model,
                                           "version": timed.version, "code": code, "duration_s": round(seconds, 6),
                                           "queue_s": None if timed.queue_s is None else round(timed.queue_s, 6)})
