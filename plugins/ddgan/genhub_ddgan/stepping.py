"""Step-level sampling for both families of this plugin (``hub.stepping``): a few-step generator chain.

The network predicts x_0 from (x_t, t, z) for t = T..1; the family's ``move`` takes x_t to x_{t-1} with it.
"""

from __future__ import annotations

from typing import Callable

import torch

from hub.model import NoiseSource, SampleRequest, StepEvent
from hub.stepping import PassInput, Trajectory

# move(x0, x_t, t [N], noise) -> x_{t-1}; output(x) -> the sample as returned (data scale, clamp)
Move = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, NoiseSource], torch.Tensor]


class FewStepTrajectory(Trajectory):
    """One request's chain. ``z_dim`` > 0 draws a fresh z per sample and step (after x_T, before the step's noise);
    ``result_is_x0``: the result is the last x_0 prediction (a distilled student), else the last x_t; ``fixed_z``
    [N, K]: the z of every step instead (a student's class, drawn from x_T; with z_dim 0)."""

    def __init__(self, request: SampleRequest, noise: NoiseSource, x_T: torch.Tensor, steps: int, z_dim: int,
                 move: Move, output: Callable[[torch.Tensor], torch.Tensor], result_is_x0: bool = False,
                 fixed_z: torch.Tensor | None = None) -> None:
        self.request, self.noise, self.x, self.x0 = request, noise, x_T, x_T
        self.total, self.done = steps, 0
        self.z_dim, self.move, self.output, self.result_is_x0 = z_dim, move, output, result_is_x0
        self.fixed_z = fixed_z
        self._z: torch.Tensor | None = None  # drawn once per step, kept until the step is taken

    @property
    def rows(self) -> int:
        return int(self.x.shape[0])

    def _t(self) -> torch.Tensor:
        return torch.full((self.rows,), self.total - self.done, dtype=torch.long, device=self.x.device)  # [N]

    def pass_input(self) -> PassInput:
        if self.z_dim and self._z is None:
            self._z = self.noise.randn(self.z_dim)  # [N, z_dim]
        return PassInput(self.x, self._t(), self._z if self.fixed_z is None else self.fixed_z)

    def advance(self, output: torch.Tensor) -> StepEvent:
        self.x0 = output
        self.x = self.move(output, self.x, self._t(), self.noise)
        self.done += 1
        self._z = None
        return StepEvent(self.done, self.total, self.output(output) if self.preview_due() else None)

    def result(self) -> torch.Tensor:
        return self.output(self.x0 if self.result_is_x0 else self.x)


def concat_z(conds: list[torch.Tensor | None]) -> torch.Tensor | None:
    """The z rows of a pass (None for generators without z)."""
    return None if conds[0] is None else torch.cat([c for c in conds if c is not None])
