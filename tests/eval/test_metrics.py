"""The metrics on inputs whose answer is known: no model involved."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hub.builtin.datasets import grid25_centres, load_grid25, ring8_centres
from hub.errors import InvalidArgument
from hub.eval.metrics import Gaussian, class_agreement, frechet_distance, frechet_distance_gaussians, precision_recall
from hub.eval.mixture import default_min_count, mixture_score, mode_agreement


def _gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    return np.random.RandomState(seed).randn(n, d) + shift


# -- mixtures --------------------------------------------------------------------------------------------------

def test_samples_of_the_true_mixture_cover_all_25_modes_with_high_quality() -> None:
    data = load_grid25("test")
    score = mixture_score(data.data[:2500], data.meta["centres"], data.meta["std"])
    assert score.modes_covered == 25 and score.num_modes == 25
    assert score.min_count == 20  # PacGAN: a fifth of the 100 expected per mode
    assert score.high_quality_share > 0.97  # 1 - exp(-4.5) = 0.989 within 3 std in 2D
    assert score.mode_kl < 0.02


def test_a_single_collapsed_mode_covers_one() -> None:
    centres = grid25_centres()
    rng = np.random.RandomState(0)
    collapsed = centres[7] + 0.05 * rng.randn(2500, 2)
    score = mixture_score(collapsed, centres, 0.05)
    assert score.modes_covered == 1 and score.counts[7] > 2400
    assert score.high_quality_share > 0.97  # sharp, just not diverse
    assert score.mode_kl == pytest.approx(math.log(25), rel=1e-6)


def test_modes_with_too_few_or_blurry_samples_are_not_covered() -> None:
    centres = grid25_centres()
    rng = np.random.RandomState(1)
    sharp = np.repeat(centres[:10], 240, axis=0) + 0.05 * rng.randn(2400, 2)  # 10 modes, 240 each
    sparse = np.repeat(centres[10:15], 19, axis=0)  # 5 modes with 19 < 20 samples each
    blurry = np.repeat(centres[15:], 1, axis=0) + 0.5  # far off their centres: not high quality
    score = mixture_score(np.concatenate([sharp, sparse, blurry]), centres, 0.05)
    assert score.num_samples == 2505 and score.min_count == default_min_count(2505, 25) == 21
    assert score.modes_covered == 10
    assert score.modes_with_any == 15  # VEEGAN's looser count sees the sparse ones


def test_ring_and_explicit_threshold() -> None:
    centres = ring8_centres()
    points = np.repeat(centres, 5, axis=0)
    assert mixture_score(points, centres, 0.02, min_count=5).modes_covered == 8
    assert mixture_score(points, centres, 0.02, min_count=6).modes_covered == 0
    assert mode_agreement(points, centres, np.repeat(np.arange(8), 5)) == 1.0
    with pytest.raises(InvalidArgument, match=r"\[N, 2\]"):
        mixture_score(np.zeros((4, 3)), centres, 0.02)


# -- Fréchet distance ------------------------------------------------------------------------------------------

def test_frechet_distance_of_a_set_with_itself_is_zero() -> None:
    x = _gaussian(500, 16, 0)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_grows_with_a_mean_shift() -> None:
    x = _gaussian(2000, 8, 0)
    values = [frechet_distance(x, x + shift) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert values == sorted(values)
    # equal covariances: FD is exactly ||shift||^2 = 8 * shift^2
    assert values[2] == pytest.approx(8.0, rel=1e-6) and values[3] == pytest.approx(32.0, rel=1e-6)


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians() -> None:
    a = Gaussian(np.zeros(3), np.diag([1.0, 4.0, 9.0]), 0)
    b = Gaussian(np.ones(3), np.diag([4.0, 4.0, 1.0]), 0)
    # sum (sqrt(s_a) - sqrt(s_b))^2 + ||mu diff||^2 = (1 + 0 + 4) + 3
    assert frechet_distance_gaussians(a, b) == pytest.approx(8.0, abs=1e-9)


def test_frechet_distance_is_safe_on_singular_covariances() -> None:
    # 10 samples of 64-d features: rank-deficient covariances, where sqrtm of the product is fragile
    x, y = _gaussian(10, 64, 0), _gaussian(10, 64, 1)
    value = frechet_distance(x, y)
    assert math.isfinite(value) and value > 0
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(InvalidArgument, match="feature sizes differ"):
        frechet_distance(x, _gaussian(10, 63, 0))
    with pytest.raises(InvalidArgument, match="NaN"):
        frechet_distance(np.full((4, 2), np.nan), x[:, :2])


# -- precision and recall --------------------------------------------------------------------------------------

def test_precision_and_recall_of_a_set_with_itself_are_one() -> None:
    x = _gaussian(300, 4, 0)
    pr = precision_recall(x, x, k=3)
    assert pr.precision == 1.0 and pr.recall == 1.0


def test_precision_and_recall_of_disjoint_sets_are_zero() -> None:
    x = _gaussian(300, 4, 0)
    pr = precision_recall(x, x + 100.0, k=3)
    assert pr.precision == 0.0 and pr.recall == 0.0


def test_a_mode_dropping_fake_set_keeps_precision_and_loses_recall() -> None:
    real = np.concatenate([_gaussian(300, 2, 0), _gaussian(300, 2, 1, shift=20.0)])
    fake = _gaussian(600, 2, 2)  # only the first of the two clusters
    pr = precision_recall(real, fake, k=3)
    assert pr.precision > 0.9 and 0.4 < pr.recall < 0.6
    # a torch input works the same
    assert precision_recall(torch.from_numpy(real), torch.from_numpy(fake), k=3) == pr


def test_class_agreement_reads_logits_or_labels() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0]])
    assert class_agreement(logits, torch.tensor([0, 1, 1, 1])) == 0.75
    assert class_agreement(np.array([0, 1]), np.array([0, 0])) == 0.5
    with pytest.raises(InvalidArgument, match="one requested label per sample"):
        class_agreement(logits, torch.tensor([0, 1]))


# -- memorisation, intervals, random features ------------------------------------------------------------------

def test_copies_of_training_rows_are_flagged_and_fresh_draws_are_not() -> None:
    from hub.eval.metrics import memorisation

    train, heldout, fresh = _gaussian(500, 8, 0), _gaussian(200, 8, 1), _gaussian(200, 8, 2)
    copies = train[:200] + 1e-3 * _gaussian(200, 8, 3)
    copied = memorisation(copies, train, heldout)
    assert copied.nn_ratio < 0.05 and copied.copy_share == 1.0
    honest = memorisation(fresh, train, heldout)
    assert 0.8 < honest.nn_ratio < 1.25 and honest.copy_share < 0.15  # about 1 and about the 5% quantile
    far = memorisation(fresh + 10.0, train, heldout)  # broken samples: far from everything, copy nothing
    assert far.nn_ratio > 3 and far.copy_share == 0.0
    with pytest.raises(InvalidArgument, match="quantile"):
        memorisation(fresh, train, heldout, quantile=1.5)


def test_interval_of_repeated_figures() -> None:
    from hub.eval.metrics import interval

    spread = interval([1.0, 2.0, 3.0])
    assert spread.mean == 2.0 and spread.std == pytest.approx(1.0)
    assert spread.high - spread.mean == pytest.approx(4.303 / math.sqrt(3))  # t(0.975, 2 dof)
    assert spread.details()["per_seed"] == [1.0, 2.0, 3.0]
    single = interval([5.0])
    assert (single.low, single.high, single.std) == (5.0, 5.0, 0.0)
    with pytest.raises(InvalidArgument, match="values"):
        interval([])


def test_random_features_are_seeded_and_separate_distributions() -> None:
    from hub.eval.features import FEATURE_DIM, RandomFeatures

    images = torch.rand(64, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    a, b = RandomFeatures(1), RandomFeatures(1)
    assert a.digest == b.digest and torch.equal(a(images), b(images))  # a function of the seed alone
    assert RandomFeatures(1, seed=1).digest != a.digest
    assert a(images).shape == (64, FEATURE_DIM) and a(images[:, :, ::2, ::2]).shape == (64, FEATURE_DIM)
    more = torch.rand(64, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    darker = (more - 0.8).clamp(-1, 1)
    same, shifted = frechet_distance(a(images), a(more)), frechet_distance(a(images), a(darker))
    assert shifted > 5 * same
    with pytest.raises(InvalidArgument, match="images"):
        a(torch.zeros(2, 3, 16, 16))


def test_speed_is_timed_in_cpu_time_with_one_thread_so_other_tenants_do_not_count() -> None:
    import time

    from hub.eval.speed import time_calls

    # a call that sleeps uses wall time but almost no CPU: the CPU clock sees (nearly) nothing of it
    wall = time_calls(lambda: time.sleep(0.02), min_repeats=2, budget_s=0.0, warmup=0)
    cpu = time_calls(lambda: time.sleep(0.02), min_repeats=2, budget_s=0.0, warmup=0, clock=time.process_time)
    assert min(wall) >= 0.02 and max(cpu) < 0.01
