"""Routing by latency budget between registered versions of different speed and quality."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import pytest

from hub.core import Hub
from hub.devices import hardware_description
from hub.errors import InvalidArgument, NotFound
from hub.eval.routing import Candidate, choose


@pytest.fixture
def hub(hub_home: Path) -> Iterator[Hub]:
    """Without the bundled checkpoints: their figures were measured on this kind of machine and would compete."""
    with Hub.open(home=hub_home, sync=False) as opened:
        yield opened


def _version(hub: Hub, model: str, dataset: str = "digits") -> str:
    hub.registry.ensure_model(model, "ddpm", "test")
    digest = hashlib.sha256(f"{model}-{len(hub.registry.list_versions(model))}".encode()).hexdigest()
    return hub.registry.add_version(model, config={}, artifact_digest=digest, dataset=dataset).ref


def _figures(hub: Hub, ref: str, *, fd: float | None = None, latency: float, hardware: str | None = None,
             sampler: str | None = "ddim", steps: int | None = 50, conditional: bool = False, **points: float) -> None:
    hw = hardware or hardware_description()
    quality = {"fd": fd, **points} if fd is not None else points
    if conditional:
        quality["class_agreement"] = 0.9
    for name, value in quality.items():
        hub.registry.add_metric(ref, name, value, data="digits:train", hardware=hw, sampler=sampler, steps=steps)
    hub.registry.add_metric(ref, "latency_p50_ms_batch1", latency, data="digits", hardware=hw, sampler=sampler, steps=steps)


@pytest.fixture
def two_versions(hub: Hub) -> tuple[str, str]:
    """A slow, good diffusion version and a fast, worse one."""
    slow, fast = _version(hub, "slow-good"), _version(hub, "fast-rough")
    _figures(hub, slow, fd=12.0, latency=120.0)
    _figures(hub, fast, fd=40.0, latency=8.0, sampler=None, steps=1)
    return slow, fast


def test_routing_picks_the_best_quality_that_fits_the_budget(hub: Hub, two_versions: tuple[str, str]) -> None:
    slow, fast = two_versions
    assert hub.route("digits", 500).ref == slow
    assert hub.route("digits", 120).ref == slow  # the budget is inclusive
    assert hub.route("digits", 50).ref == fast
    chosen = hub.route_settings("digits", 50)
    assert (chosen.sampler, chosen.steps, chosen.latency_ms, chosen.quality) == (None, 1, 8.0, {"fd": 40.0})
    assert chosen.fitting == 1 and chosen.considered == 2
    assert "routed to fast-rough:1" in chosen.describe() and "8.0 ms" in chosen.describe()


def test_nothing_fits_names_the_fastest_latency(hub: Hub, two_versions: tuple[str, str]) -> None:
    with pytest.raises(NotFound, match=r"the fastest is fast-rough:1 at 8\.0 ms p50.*at least 8 ms"):
        hub.route("digits", 5)


def test_the_same_version_under_two_samplers_is_two_options(hub: Hub) -> None:
    ref = _version(hub, "ddpm-digits")
    _figures(hub, ref, fd=10.0, latency=900.0, sampler="ddpm", steps=1000)
    _figures(hub, ref, fd=25.0, latency=40.0, sampler="ddim", steps=20)
    assert (hub.route_settings("digits", 1000).sampler, hub.route_settings("digits", 100).steps) == ("ddpm", 20)


def test_ties_go_to_the_faster_then_the_newer(hub: Hub) -> None:
    a, b = _version(hub, "tie-a"), _version(hub, "tie-b")
    _figures(hub, a, fd=20.00001, latency=30.0)  # equal to 4 significant digits
    _figures(hub, b, fd=20.0, latency=50.0)
    assert hub.route("digits", 100).ref == a  # faster
    c = _version(hub, "tie-c")
    _figures(hub, c, fd=20.0, latency=30.0)
    assert hub.route("digits", 100).ref == c  # as fast, newer


def test_points_rank_by_modes_then_high_quality_share(hub: Hub) -> None:
    gan, ddpm, hybrid = (_version(hub, n, "gmm-grid25") for n in ("gan-grid", "ddpm-grid", "ddgan-grid"))
    _figures(hub, gan, latency=1.0, modes_covered=3, high_quality_share=0.9)
    _figures(hub, ddpm, latency=300.0, modes_covered=25, high_quality_share=0.7)
    _figures(hub, hybrid, latency=5.0, modes_covered=25, high_quality_share=0.5)
    assert hub.route("gmm-grid25", 1000).ref == ddpm
    assert hub.route("gmm-grid25", 100).ref == hybrid
    assert hub.route("gmm-grid25", 2).ref == gan


def test_only_latency_measured_on_this_hardware_counts(hub: Hub) -> None:
    ref = _version(hub, "elsewhere")
    _figures(hub, ref, fd=5.0, latency=1.0, hardware="cuda NVIDIA H100, torch 2.13.0")
    with pytest.raises(NotFound, match=r"measured on .*run `genhub eval REF` on this machine"):
        hub.route("digits", 100)
    assert hub.route_settings("digits", 100, hardware="cuda NVIDIA H100, torch 2.13.0").ref == ref


def test_a_condition_needs_a_conditional_version(hub: Hub, two_versions: tuple[str, str]) -> None:
    with pytest.raises(NotFound, match="class-conditional"):
        hub.route("digits", 500, condition=3)
    cond = _version(hub, "cond-digits")
    _figures(hub, cond, fd=30.0, latency=60.0, conditional=True)
    assert hub.route("digits", 500, condition="3").ref == cond
    assert hub.route("digits", 500).ref == two_versions[0]  # without a condition the better one still wins
    with pytest.raises(InvalidArgument, match="out of range"):
        hub.route("digits", 500, condition=10)
    with pytest.raises(InvalidArgument, match="not a class"):
        hub.route("digits", 500, condition="seven")


def test_empty_and_bad_requests(hub: Hub) -> None:
    with pytest.raises(NotFound, match="no registered version is trained on 'shapes'"):
        choose([Candidate(hub.registry.resolve(_version(hub, "other")), [])], "shapes", 100, hardware="x")
    with pytest.raises(NotFound, match="no dataset 'nope'"):
        hub.route("nope", 100)
    with pytest.raises(InvalidArgument, match="positive number"):
        choose([], "digits", 0, hardware="x")
    with pytest.raises(NotFound):
        choose([Candidate(hub.registry.resolve(_version(hub, "bare")), [])], "digits", 10, hardware="x")
