"""The execution engine: one scheduler of network passes for every transport (local gRPC, Ray replicas, ...).

It knows neither gRPC nor Ray. A transport builds a ``Job`` (a parsed ``SampleRequest`` and its loaded
model), calls ``Engine.run`` (or ``submit``) and turns the ``Outcome`` into its own response; progress and
previews arrive through ``Job.on_progress`` (on the sampling thread), final samples through ``Job.encode``.
Stepped families (``hub.stepping``) are batched pass by pass across requests; others request by request.
"""

from hub.engine.engine import Engine
from hub.engine.jobs import CANCELLED, DEADLINE, ERROR, OK, EngineObserver, EngineOptions, Job, Outcome
from hub.engine.stream import Latest

__all__ = ["CANCELLED", "DEADLINE", "ERROR", "OK", "Engine", "EngineObserver", "EngineOptions", "Job", "Latest", "Outcome"]
