"""Prometheus metrics of a genhub server, and the per-request access log.

One ``Metrics`` per server holds the series (its own ``CollectorRegistry``, so several
servers in one process never share counts). Front ends report through four calls, from
as few places as possible: ``request_done`` (one per generation RPC, whatever its
outcome), ``sampling_call`` (one per batched sampling call), ``step`` (one per network
pass) and ``queue`` (queued and in-flight work of a model). ``genhub serve
--metrics-address HOST:PORT`` exposes them at ``/metrics``; on Ray the replicas record
the same series through ``ray.serve.metrics`` (``RayMetrics``), which Ray exports.

Series (labels ``model``, ``version``; ``code`` for requests, the gRPC status name):
genhub_requests_total, genhub_request_duration_seconds, genhub_queue_duration_seconds,
genhub_batch_samples, genhub_step_duration_seconds, genhub_queue_cost,
genhub_inflight_requests, genhub_loaded_models, plus the default process metrics.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

access_log = logging.getLogger("hub.access")  # one line per generation request (JSON with --log-format json)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
STEP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SAMPLE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
MODEL_LABELS = ("model", "version")


def split_ref(ref: str) -> tuple[str, str]:
    """("name", "3") from "name:3"; ("name", "") for a reference that never resolved to a version."""
    name, _, version = ref.partition(":")
    return name, version if version.isdigit() else ""


class Metrics:
    """The genhub series of one server, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        r = self.registry
        self.requests = Counter("genhub_requests", "Generation requests finished, by gRPC status code",
                                (*MODEL_LABELS, "code"), registry=r)
        self.request_duration = Histogram("genhub_request_duration_seconds", "Generation request time, arrival to answer",
                                          MODEL_LABELS, buckets=LATENCY_BUCKETS, registry=r)
        self.queue_duration = Histogram("genhub_queue_duration_seconds", "Time a request waited before its sampling call",
                                        MODEL_LABELS, buckets=LATENCY_BUCKETS, registry=r)
        self.batch_samples = Histogram("genhub_batch_samples", "Samples per sampling call (batched requests together)",
                                       MODEL_LABELS, buckets=SAMPLE_BUCKETS, registry=r)
        self.step_duration = Histogram("genhub_step_duration_seconds", "Time of one network pass (one sampling step)",
                                       MODEL_LABELS, buckets=STEP_BUCKETS, registry=r)
        self.queue_cost = Gauge("genhub_queue_cost", "Queued work, in the units admission counts (requests)",
                                MODEL_LABELS, registry=r)
        self.inflight = Gauge("genhub_inflight_requests", "Requests queued or sampling", MODEL_LABELS, registry=r)
        self.loaded_models = Gauge("genhub_loaded_models", "Model weights loaded for serving", registry=r)
        self._server: Any = None

    # -- what front ends report ------------------------------------------------------------------

    def request_done(self, ref: str, code: str, duration_s: float, queue_s: float | None = None,
                     request_id: str = "") -> None:
        """One generation RPC finished with ``code`` (OK, NOT_FOUND, ...); ``ref`` is "name:version" or the name asked."""
        model, version = split_ref(ref)
        self.requests.labels(model, version, code).inc()
        self.request_duration.labels(model, version).observe(duration_s)
        if queue_s is not None:
            self.queue_duration.labels(model, version).observe(queue_s)
        log_access(model, version, code, duration_s, queue_s, request_id)

    def sampling_call(self, ref: str, samples: int) -> None:
        self.batch_samples.labels(*split_ref(ref)).observe(samples)

    def step(self, ref: str, seconds: float) -> None:
        self.step_duration.labels(*split_ref(ref)).observe(seconds)

    def queue(self, ref: str, queued: int, inflight: int) -> None:
        model, version = split_ref(ref)
        self.queue_cost.labels(model, version).set(queued)
        self.inflight.labels(model, version).set(inflight)

    def loaded(self, count: int) -> None:
        self.loaded_models.set(count)

    # -- exposition ------------------------------------------------------------------------------

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


def log_access(model: str, version: str, code: str, duration_s: float, queue_s: float | None, request_id: str) -> None:
    """One access-log record for a finished generation request (``hub.server.logs`` renders it as JSON)."""
    access_log.info(
        "%s %s:%s %s in %.1f ms", request_id or "-", model, version or "-", code, duration_s * 1000,
        extra={"request_id": request_id, "model": model, "version": version, "code": code,
               "duration_s": round(duration_s, 6), "queue_s": None if queue_s is None else round(queue_s, 6)},
    )


class RayMetrics:
    """The same series and calls as ``Metrics``, recorded through ``ray.serve.metrics`` in a Serve replica.

    Ray exports them on each node's metrics port, prefixed ``ray_`` (``ray_genhub_requests_total``: Ray adds ``_total``);
    deploy/podmonitor.yaml has Prometheus scrape them and deploy/grafana-dashboard.json matches both names.
    """

    def __init__(self) -> None:
        from ray.serve import metrics as m

        self.requests = m.Counter("genhub_requests", "Generation requests finished, by gRPC status code",
                                  tag_keys=(*MODEL_LABELS, "code"))
        self.request_duration = m.Histogram("genhub_request_duration_seconds", "Generation request time",
                                            boundaries=list(LATENCY_BUCKETS), tag_keys=MODEL_LABELS)
        self.queue_duration = m.Histogram("genhub_queue_duration_seconds", "Time a request waited before sampling",
                                          boundaries=list(LATENCY_BUCKETS), tag_keys=MODEL_LABELS)
        self.batch_samples = m.Histogram("genhub_batch_samples", "Samples per sampling call",
                                         boundaries=list(SAMPLE_BUCKETS), tag_keys=MODEL_LABELS)
        self.step_duration = m.Histogram("genhub_step_duration_seconds", "Time of one network pass",
                                         boundaries=list(STEP_BUCKETS), tag_keys=MODEL_LABELS)
        self.queue_cost = m.Gauge("genhub_queue_cost", "Queued work (requests)", tag_keys=MODEL_LABELS)
        self.inflight = m.Gauge("genhub_inflight_requests", "Requests queued or sampling", tag_keys=MODEL_LABELS)
        self.loaded_models = m.Gauge("genhub_loaded_models", "Model versions loaded in this replica")

    @staticmethod
    def _tags(ref: str) -> dict[str, str]:
        model, version = split_ref(ref)
        return {"model": model, "version": version}

    def request_done(self, ref: str, code: str, duration_s: float, queue_s: float | None = None,
                     request_id: str = "") -> None:
        tags = self._tags(ref)
        self.requests.inc(tags={**tags, "code": code})
        self.request_duration.observe(duration_s, tags=tags)
        if queue_s is not None:
            self.queue_duration.observe(queue_s, tags=tags)
        log_access(tags["model"], tags["version"], code, duration_s, queue_s, request_id)

    def sampling_call(self, ref: str, samples: int) -> None:
        self.batch_samples.observe(samples, tags=self._tags(ref))

    def step(self, ref: str, seconds: float) -> None:
        self.step_duration.observe(seconds, tags=self._tags(ref))

    def queue(self, ref: str, queued: int, inflight: int) -> None:
        tags = self._tags(ref)
        self.queue_cost.set(queued, tags=tags)
        self.inflight.set(inflight, tags=tags)

    def loaded(self, count: int) -> None:
        self.loaded_models.set(count)


class StepTimer:
    """Times network passes from a sampling loop's step callbacks (called on the sampling thread)."""

    def __init__(self, metrics: Metrics | RayMetrics | None, ref: str, clock: Any) -> None:
        self.metrics, self.ref, self.clock = metrics, ref, clock
        self._last = clock()
        self._lock = threading.Lock()

    def __call__(self) -> None:
        if self.metrics is None:
            return
        now = self.clock()
        with self._lock:
            elapsed, self._last = now - self._last, now
        self.metrics.step(self.ref, elapsed)
