"""The shipped checkpoints: recognisable digits (judged as in genhub-stylegan's test), students with their teachers."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch

from hub.core import Hub
from hub.eval.classifier import load_classifier
from hub.eval.evaluate import draw_samples, image_set_scores
from hub.eval.mixture import mixture_score
from hub.model import SampleRequest


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    torch.set_num_threads(1)
    with Hub.open(home=Path(tmp_path_factory.mktemp("pretrained"))) as opened:
        yield opened


@pytest.mark.parametrize("name", ["ddgan-digits", "distill-digits"])
def test_shipped_model_draws_recognisable_digits(hub: Hub, name: str) -> None:
    version = hub.resolve(name)
    # every digits family on the same 16x16 digits, so their figures compare (the DDGAN was 8x8 until 2026-11-30)
    assert "pretrained" in version.tags and version.dataset == "digits16"
    samples = hub.generate(name, SampleRequest.from_seed(0, 200), log=False).samples
    assert samples.shape == (200, 1, 16, 16)
    confidence, per_class = load_classifier(version.dataset).recognisability(samples)
    assert confidence >= 0.8  # the shipped DDPM scores 0.94, these 0.92 and 0.98 (the student before: 0.92)
    assert min(per_class) >= 1


def test_shipped_ddgan_digits_holds_its_frechet_distance(hub: Hub) -> None:
    # Issue #16: within 1.5x the FD of DDPM DDIM-50 (27.2), i.e. <= 40.8. As shipped (the 20-minute recipe at
    # base_channels=16) 35.3 over 3 x 297 samples (seeds 0-2: 31.4, 35.7, 38.7); the 40-minute recipe before it
    # scored 38.1 on seed 0 (38.7 over three), the first 16x16 checkpoint 47.4.
    model = hub.load("ddgan-digits").model
    assert model.config.base_channels == 16
    samples = draw_samples(model, 297, seed=0, sampler=None, steps=None)
    fd = image_set_scores(samples, hub.dataset("digits16", "test"), load_classifier("digits16"), 0, None)["fd"]
    assert fd < 40.8


def test_shipped_distilled_digits_student_holds_its_frechet_distance(hub: Hub) -> None:
    # Issue #16: within 1.5x the FD of DDPM DDIM-50 (27.2), i.e. <= 40.8. As shipped 27.6 over 3 x 297 samples
    # (seeds 0-2: 21.1, 23.5, 38.2), from the teacher's class-conditional samples (teacher_classes=10); the checkpoint
    # before it, taught by the teacher's null class, 48.0 on seed 0 (49.9 over three).
    model = hub.load("distill-digits").model
    assert model.config.teacher_classes == 10
    samples = draw_samples(model, 297, seed=0, sampler=None, steps=None)
    fd = image_set_scores(samples, hub.dataset("digits16", "test"), load_classifier("digits16"), 0, None)["fd"]
    assert fd < 24.0


def test_students_record_their_shipped_teachers(hub: Hub) -> None:
    for student, teacher in (("distill-digits", "ddpm-digits:1"), ("distill-grid25", "ddpm-grid25:1")):
        version = hub.resolve(student)
        assert version.parent == teacher and version.config["teacher"] == teacher
        assert hub.resolve(teacher).family == "ddpm"
    points = hub.generate("ddgan-grid25", SampleRequest.from_seed(0, 8), log=False).samples
    assert points.shape == (8, 2) and torch.isfinite(points).all()


# Headline figures as shipped (3 x 2,500 samples), with a margin for the 1,000 drawn here (seed 0: DDGAN 25/25,
# HQ 0.894; student 25/25, HQ 0.867). Issue #16's goals are 25/25 with HQ >= 0.85 (DDGAN) and >= 0.80 (student);
# the README's trade-offs section says how each got there.
# DDGAN: 25/25, HQ 0.89 as shipped (data_scale 0.25 and 4 octaves of Fourier features in G; without the features
# HQ 0.74, on raw coordinates 23/25 at HQ 0.40).
GRID_FLOORS = {"ddgan-grid25": (24, 0.85),
               # 25/25, HQ 0.86 as shipped (4 steps on the teacher's chain, 20,000 steps; 12,000 steps: HQ 0.77)
               "distill-grid25": (24, 0.80)}


@pytest.mark.parametrize("name", sorted(GRID_FLOORS))
def test_shipped_grid_models_hold_their_coverage_and_sharpness(hub: Hub, name: str) -> None:
    mixture = hub.mixture("gmm-grid25")
    assert mixture is not None
    points = hub.generate(name, SampleRequest.from_seed(0, 1000), log=False).samples
    score = mixture_score(points, *mixture)
    min_modes, min_hq = GRID_FLOORS[name]
    assert score.modes_covered >= min_modes and score.high_quality_share >= min_hq
    assert score.mode_kl < 0.1  # spread over the modes, not collapsed (the plain GAN: 2.0 nats)
