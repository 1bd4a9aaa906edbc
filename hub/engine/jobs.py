"""What the engine takes (a ``Job``: a parsed request and its model) and what it gives back (an ``Outcome``)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

from hub.errors import Cancelled, DeadlineExceeded, GenhubError
from hub.model import GenerativeModel, SampleCost, SampleRequest, StepEvent

OK, CANCELLED, DEADLINE, ERROR = "ok", "cancelled", "deadline", "error"  # the four outcomes, as the generation log writes them
DEFAULT_MAX_REQUEST_COST = 2**24  # passes x rows x values: 4,096 2D points x 1,000 steps fit; 64 x 3x32x32 x 1,000 do not


@dataclass(frozen=True)
class EngineOptions:
    """How the engine schedules and admits work (per model, except where said).

    ``max_batch``: rows of one network pass (samples, a guided sample counting twice); a larger lone request
    still runs, alone. ``max_request_cost``: the largest request (``SampleCost.total``), unless a job carries
    its own limit. ``max_queued_cost``: the cost a model may have admitted and unfinished; past it, new
    requests are RESOURCE_EXHAUSTED (a lone request always gets in). ``max_request_s``: the deadline of a
    request that brings none. ``step_level``: False runs stepped families request by request (the bench's
    baseline). ``aging_passes_per_s``: how fast waiting raises a request's priority (see ``Lane``).
    """

    max_batch: int = 64
    max_request_cost: int = DEFAULT_MAX_REQUEST_COST
    max_queued_cost: int = 8 * DEFAULT_MAX_REQUEST_COST
    max_request_s: float | None = 600.0
    step_level: bool = True
    aging_passes_per_s: float = 100.0

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max batch must be >= 1 row, got {self.max_batch}")
        if self.max_request_cost < 1:
            raise ValueError(f"max request cost must be >= 1, got {self.max_request_cost}")
        if self.max_queued_cost < self.max_request_cost:
            raise ValueError(f"max queued cost ({self.max_queued_cost}) must be at least the max request cost "
                             f"({self.max_request_cost}), or no request of the largest allowed size could queue")
        if self.max_request_s is not None and self.max_request_s <= 0:
            raise ValueError(f"max request seconds must be > 0 (or None: no limit), got {self.max_request_s}")


@dataclass
class Outcome:
    """How a job ended. ``value`` is what the job's ``encode`` made of its samples (the samples without one)."""

    status: str  # OK, CANCELLED, DEADLINE or ERROR
    value: Any = None
    error: BaseException | None = None
    duration_s: float = 0.0  # from its first network pass to its end
    queue_s: float = 0.0  # waiting before its first pass
    batch_samples: int = 0  # rows of the largest network pass it was part of
    passes: int = 0  # network passes it took part in

    @property
    def ok(self) -> bool:
        return self.status == OK

    def log_error(self) -> str | None:
        """The error text the generation log keeps (None when ok)."""
        if self.error is None:
            return None
        return f"{type(self.error).__name__}: {self.error}" if self.status == ERROR else str(self.error)


ProgressFn = Callable[["Job", StepEvent], None]  # called on the sampling thread; keep it cheap, never block
EncodeFn = Callable[[Any], Any]  # samples [N, ...] -> what the caller wants (PNG messages...); on the sampling thread


@dataclass(eq=False)
class Job:
    """One request for the engine: a parsed ``SampleRequest`` and the model to sample it from.

    ``lane`` names the weights: jobs with equal lanes share network passes (use the weights' digest, so
    versions with the same weights batch together). ``context`` is the caller's own (version, seed, format...).
    """

    request: SampleRequest
    model: GenerativeModel
    lane: Hashable
    name: str = ""  # for messages, e.g. "ddpm-digits:1"
    deadline: float | None = None  # time.monotonic() seconds; None: the engine's max_request_s
    max_cost: int | None = None  # this model's own request limit (a serve.max_request_cost tag); None: the engine's
    on_progress: ProgressFn | None = None
    encode: EncodeFn | None = None
    context: Any = None
    cost: SampleCost | None = None  # filled in by Engine.submit
    enqueued_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    cancelled: bool = False  # set from any thread; read at pass boundaries
    outcome: Outcome | None = None
    future: asyncio.Future[Outcome] | None = None
    # scheduling state, owned by the engine
    trajectory: Any = None
    served_at: float = 0.0  # last pass it took part in (aging)
    passes: int = 0
    batch_samples: int = 0

    @property
    def num_samples(self) -> int:
        return self.request.num_samples

    def cancel(self) -> None:
        """The caller gave up: the job leaves at the next pass boundary, as CANCELLED."""
        self.cancelled = True

    def expired(self, now: float | None = None) -> bool:
        return self.deadline is not None and (now if now is not None else time.monotonic()) >= self.deadline

    def dead(self, now: float | None = None) -> bool:
        return self.cancelled or self.expired(now)

    def stop_reason(self, where: str = "") -> GenhubError:
        if self.expired():
            return DeadlineExceeded(f"the request's deadline passed{where}; allow a longer deadline or fewer steps")
        return Cancelled(f"the client cancelled the request{where}")

    def remaining_cost(self) -> int:
        """Cost still to run: the passes not taken yet."""
        assert self.cost is not None
        traj = self.trajectory
        if traj is None:
            return self.cost.total
        return max(0, traj.remaining) * self.cost.rows * self.cost.values


class EngineObserver:
    """Hooks for metrics (Prometheus, logs): override what you need. Called on the engine's event loop."""

    def on_pass(self, lane: str, rows: int, requests: int, seconds: float, passes: int = 1) -> None:
        """A network pass ran (``passes`` > 1: a whole request-level sampling call of that many passes)."""

    def on_queue(self, lane: str, queued_cost: int, queued: int, active: int) -> None:
        """A lane's load changed: cost admitted and unfinished, requests waiting, requests sampling."""

    def on_outcome(self, job: Job) -> None:
        """A job ended (``job.outcome`` is set)."""
