"""Step-level sampling: the part of the model interface the engine batches pass by pass.

A family opts in by making its model a ``SteppedModel`` as well as a ``GenerativeModel``:

- ``begin(request)`` checks the request and draws its starting noise: a ``Trajectory``, no network pass yet;
- ``network_pass(x, t, conds)`` runs the network once over the rows of many trajectories, concatenated.

A trajectory says what rows it puts into the next pass (``pass_input``: x, per-row timesteps and the
family's conditioning) and takes its step from their output (``advance``). The engine gathers the rows
of every active request of a model, whatever their sampler, steps, eta, guidance or position, into one
``network_pass``; ``sample_alone`` runs the same code for one request, so a request's samples are the
same alone and in any batch (up to float rounding of the batched network call).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

import torch

from hub.model import SampleRequest, StepCallback, StepEvent, report_step
from hub.sampling import SamplerState


@dataclass
class PassInput:
    """One trajectory's rows of a network pass."""

    x: torch.Tensor  # [R, ...]
    t: torch.Tensor  # [R] int64 timesteps
    cond: Any = None  # the family's conditioning for these R rows; None: unconditional


class Trajectory(ABC):
    """One request's samples between network passes."""

    request: SampleRequest
    total: int  # network passes in all
    done: int = 0  # passes taken

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    @property
    def remaining(self) -> int:
        return self.total - self.done

    @property
    @abstractmethod
    def rows(self) -> int:
        """Rows this trajectory puts into each pass (2 x samples when guided)."""

    @abstractmethod
    def pass_input(self) -> PassInput:
        """The rows of the next pass. Idempotent until ``advance``: a failed batched pass may ask again."""

    @abstractmethod
    def advance(self, output: torch.Tensor) -> StepEvent:
        """Take one step with this trajectory's rows of the pass output; the event carries a preview when due."""

    @abstractmethod
    def result(self) -> torch.Tensor:
        """The finished samples: [N, C, H, W] in [-1, 1] or [N, D] points."""

    def preview_due(self) -> bool:
        every = self.request.preview_every
        return bool(every) and self.done % every == 0


class SteppedModel(ABC):
    """Mixin for a ``GenerativeModel`` whose sampling the engine can batch across requests, pass by pass."""

    def can_step(self, request: SampleRequest) -> bool:
        """Whether ``request`` runs pass by pass (e.g. not with a third-party sampler that only has a whole loop).

        False: the engine runs it whole, through ``sample``, batched only with requests of equal settings.
        """
        return True

    @abstractmethod
    def begin(self, request: SampleRequest) -> Trajectory:
        """Check ``request`` (raising the domain errors ``sample`` would) and draw its starting noise."""

    @abstractmethod
    def network_pass(self, x: torch.Tensor, t: torch.Tensor, conds: list[Any], rows: list[int]) -> torch.Tensor:
        """One network call over concatenated rows ([R, ...], [R]); ``conds[i]`` covers the ``rows[i]`` rows of
        trajectory i, in order. Returns [R, ...]."""

    def sample_alone(self, request: SampleRequest, callback: StepCallback | None = None) -> torch.Tensor:
        """``sample`` for a stepped family: the engine's pass loop with one request."""
        trajectory = self.begin(request)
        while not trajectory.finished:
            event = run_pass(self, [trajectory])[0]
            if isinstance(event, BaseException):
                raise event
            report_step(callback, event)
        return trajectory.result()


def run_pass(model: SteppedModel, trajectories: list[Trajectory]) -> list[StepEvent | Exception]:
    """One network pass over every trajectory's rows; each gets its step's event, or the error that failed it alone.

    If the batched call fails, the pass is run once per trajectory, so only the request whose rows fail it fails
    (nothing has advanced yet: ``pass_input`` is idempotent). A failing ``advance`` fails its own trajectory only.
    """
    inputs = [tr.pass_input() for tr in trajectories]
    rows = [int(i.x.shape[0]) for i in inputs]
    try:
        with torch.no_grad():
            if len(inputs) == 1:
                outputs = [model.network_pass(inputs[0].x, inputs[0].t, [inputs[0].cond], rows)]
            else:
                out = model.network_pass(torch.cat([i.x for i in inputs]), torch.cat([i.t for i in inputs]),
                                         [i.cond for i in inputs], rows)
                outputs = list(out.split(rows))
    except Exception as exc:  # noqa: BLE001 - isolated below, or returned for the lone trajectory
        if len(inputs) == 1:
            return [exc]
        return [event for tr in trajectories for event in run_pass(model, [tr])]
    events: list[StepEvent | Exception] = []
    for trajectory, output in zip(trajectories, outputs):
        try:
            with torch.no_grad():
                events.append(trajectory.advance(output))
        except Exception as exc:  # noqa: BLE001 - this trajectory fails alone
            events.append(exc)
    return events


class DiffusionTrajectory(Trajectory):
    """A diffusion request: a sampler's state, its conditioning rows and its classifier-free guidance.

    Guided requests put 2N rows into each pass, [conditional; unconditional] (``cond`` covers both halves),
    and step with uncond + g * (cond - uncond): only guided requests double their rows.
    """

    def __init__(self, request: SampleRequest, state: SamplerState, cond: Any = None, guidance: float | None = None,
                 finish: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 preview: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.request, self.state, self.cond, self.guidance = request, state, cond, guidance
        self.total, self.done = state.total, state.done
        self._finish, self._preview = finish, preview

    @property
    def rows(self) -> int:
        n = int(self.state.x.shape[0])
        return 2 * n if self.guidance is not None else n

    def pass_input(self) -> PassInput:
        x = self.state.x
        if self.guidance is not None:
            x = torch.cat([x, x])
        t = torch.full((x.shape[0],), self.state.timestep(), dtype=torch.long, device=x.device)  # [R]
        return PassInput(x, t, self.cond)

    def advance(self, output: torch.Tensor) -> StepEvent:
        if self.guidance is not None:
            cond, uncond = output.chunk(2)
            output = uncond + self.guidance * (cond - uncond)
        x0 = self.state.step(output)
        self.done = self.state.done
        preview = None
        if self.preview_due():
            preview = self._preview(x0) if self._preview is not None else x0
        return StepEvent(self.done, self.total, preview)

    def result(self) -> torch.Tensor:
        return self._finish(self.state.x) if self._finish is not None else self.state.x
