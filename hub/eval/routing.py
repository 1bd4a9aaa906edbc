"""Routing by budget: the best-quality registered version for a task whose measured latency fits.

A *task* is a dataset (and optionally a condition: a class the samples must belong to). A *budget* is
a latency in milliseconds: the median (p50) latency of one sample (batch 1), as recorded by ``genhub eval``
on this hardware. Documented behaviour:

- candidates: every registered version trained on the dataset, under each (sampler, steps) it was
  evaluated with; only settings with both a quality figure and a batch-1 p50 latency measured on this
  hardware count (latency measured elsewhere says nothing about this machine);
- a condition keeps only class-conditional versions (those with a ``class_agreement`` figure);
- quality: images by lowest ``fd``; 2D points by most ``modes_covered``, then highest ``high_quality_share``;
- ties: quality values equal to 4 significant digits tie; then the faster one wins, then the newer version
  (later ``created_at``, then larger id);
- nothing fits: ``NotFound`` naming the fastest candidate and its latency (the budget that would have
  worked); nothing measured here: ``NotFound`` saying to run ``genhub eval`` on this machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

from hub.errors import InvalidArgument, NotFound
from hub.eval.summary import Figures, by_settings
from hub.registry.records import MetricRecord, VersionRecord

if TYPE_CHECKING:
    from hub.registry import Registry

LATENCY = "latency_p50_ms_batch1"
SIGNIFICANT = 4


@dataclass(frozen=True)
class Candidate:
    """A registered version with all its recorded figures."""

    version: VersionRecord
    metrics: list[MetricRecord] = field(hash=False)


@dataclass(frozen=True)
class Route:
    """What routing picked: the version, the settings its figures were measured with, and why."""

    version: VersionRecord
    sampler: str | None  # give these to the request: the latency was measured with them
    steps: int | None
    latency_ms: float  # p50 at batch 1 on ``hardware``
    quality: dict[str, float] = field(hash=False)  # the figures it was ranked on
    hardware: str
    considered: int  # candidate settings measured on this hardware
    fitting: int  # of those, how many fit the budget

    @property
    def ref(self) -> str:
        return self.version.ref

    def describe(self) -> str:
        """One line for responses and logs."""
        steps = f"{self.steps} step{'s' if self.steps != 1 else ''}" if self.steps else "default steps"
        settings = f"{self.sampler} sampler, {steps}" if self.sampler else steps
        figures = ", ".join(f"{k} {v:.4g}" for k, v in self.quality.items())
        return (f"routed to {self.ref} ({settings}): p50 {self.latency_ms:.1f} ms at batch 1 on {self.hardware}; "
                f"{figures}; best of {self.fitting} fitting the budget ({self.considered} measured)")


def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT}g}") if math.isfinite(value) else value


def quality_key(figures: Figures) -> tuple[float, ...] | None:
    """Lower is better; None when the settings have no quality figure to rank on."""
    fd = figures.get("fd")
    if fd is not None:
        return (_round(fd),)
    modes, share = figures.get("modes_covered"), figures.get("high_quality_share")
    if modes is not None:
        return (-_round(modes), -_round(share if share is not None else 0.0))
    return None


def _quality_dict(figures: Figures) -> dict[str, float]:
    names = ("fd",) if figures.get("fd") is not None else ("modes_covered", "high_quality_share")
    return {n: v for n in names if (v := figures.get(n)) is not None}


@dataclass(frozen=True)
class _Option:
    version: VersionRecord
    figures: Figures
    latency: float
    key: tuple[float, ...]


def options(candidates: Iterable[Candidate], hardware: str, conditional: bool = False) -> list[_Option]:
    """Every (version, sampler, steps) with a quality figure and a batch-1 latency measured on ``hardware``."""
    found = []
    for cand in candidates:
        for figures in by_settings(cand.metrics, hardware=hardware).values():
            latency, key = figures.get(LATENCY), quality_key(figures)
            if latency is None or key is None:
                continue
            if conditional and figures.get("class_agreement") is None:
                continue
            found.append(_Option(cand.version, figures, latency, key))
    return found


def choose(candidates: Iterable[Candidate], dataset: str, budget_ms: float, *, hardware: str,
           condition: int | str | None = None) -> Route:
    """The best-quality candidate of ``dataset`` whose p50 latency at batch 1 on ``hardware`` is within budget."""
    if isinstance(budget_ms, bool) or not isinstance(budget_ms, (int, float)) or not budget_ms > 0:
        raise InvalidArgument("budget_ms", f"must be a positive number of milliseconds, got {budget_ms!r}")
    pool = [c for c in candidates if c.version.dataset == dataset]
    task = f"{dataset!r}" + (f" with condition {condition!r}" if condition is not None else "")
    if not pool:
        raise NotFound(f"no registered version is trained on {dataset!r}; train one (genhub train FAMILY --dataset "
                       f"{dataset}) or name another dataset")
    measured = options(pool, hardware, conditional=condition is not None)
    if not measured:
        refs = ", ".join(c.version.ref for c in pool[:10])
        need = "class-conditional versions with figures" if condition is not None else "figures"
        raise NotFound(f"no version for task {task} has {need} measured on {hardware} (versions: {refs}); "
                       "run `genhub eval REF` on this machine first")
    fitting = [o for o in measured if o.latency <= budget_ms]
    if not fitting:
        fastest = min(measured, key=lambda o: (o.latency, o.version.id))
        raise NotFound(
            f"no version for task {task} fits a {budget_ms:g} ms budget on {hardware}: the fastest is "
            f"{fastest.version.ref} at {fastest.latency:.1f} ms p50 (batch 1, {fastest.figures.sampler or 'default'} "
            f"sampler, {fastest.figures.steps} steps); raise the budget to at least {math.ceil(fastest.latency)} ms"
        )
    best = min(fitting, key=lambda o: (o.key, o.latency, -o.version.created_at.timestamp(), -o.version.id))
    return Route(best.version, best.figures.sampler, best.figures.steps, best.latency, _quality_dict(best.figures),
                 hardware, len(measured), len(fitting))


def choose_version(candidates: Iterable[Candidate], dataset: str, budget_ms: float, *, hardware: str,
                   condition: int | str | None = None) -> VersionRecord:
    """``choose`` reduced to the version picked."""
    return choose(candidates, dataset, budget_ms, hardware=hardware, condition=condition).version


def gather(registry: Registry, dataset: str) -> list[Candidate]:
    """Every registered version trained on ``dataset``, with its metrics."""
    found: list[Candidate] = []
    token = ""
    while True:
        models, token = registry.list_models(page_size=1000, page_token=token)
        for model in models:
            for version in registry.list_versions(model.name):
                if version.dataset == dataset:
                    found.append(Candidate(version, registry.metrics(version.ref)))
        if not token:
            return found
