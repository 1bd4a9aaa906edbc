"""The shipped checkpoints: registered on a fresh hub; `genhub generate` draws recognisable digits.

"Recognisable" is judged by the digits classifier that ships with genhub's evaluation (hub/eval/weights/digits.*,
held-out accuracy 0.983): on 200 samples its mean top-class probability is at least 0.8 (the shipped DDPM scores
0.94, stylegan-digits 0.93 and gan-digits 0.93 as shipped) and every digit appears.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from hub.core import Hub
from hub.eval.classifier import load_classifier
from hub.eval.evaluate import draw_samples, image_set_scores
from hub.eval.mixture import mixture_score
from hub.model import SampleRequest


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pretrained")


@pytest.mark.parametrize("name", ["stylegan-digits", "gan-digits"])
def test_shipped_model_draws_recognisable_digits(home: Path, name: str) -> None:
    torch.set_num_threads(1)
    with Hub.open(home=home) as hub:
        version = hub.resolve(name)
        assert "pretrained" in version.tags and version.dataset == "digits16"
        samples = hub.generate(name, SampleRequest.from_seed(0, 200), log=False).samples
    confidence, per_class = load_classifier(version.dataset).recognisability(samples)
    assert confidence >= 0.8
    assert min(per_class) >= 1  # every digit: no collapse to a few


@pytest.mark.parametrize("name,limit", [
    # Issue #16: within 2x the FD of DDPM DDIM-50 (27.2), i.e. <= 54.4. As shipped 44.8 over 3 x 297 samples
    # (seeds 0-2: 49.9, 39.7, 44.9); the 2,500-step checkpoint before it, 76.9 on seed 0 (68.9 over three).
    ("stylegan-digits", 56.0),
    # Issue #16: within 2x the floor (30.3), i.e. <= 60.6. As shipped (EMA of G, 6,000 steps) 55.4 over 3 x 297
    # (seeds 0-2: 48.7, 74.8, 42.6); the live-G 2,000-step checkpoint before it, 77.1 on seed 0 (79.6 over three).
    ("gan-digits", 55.0),
])
def test_shipped_digits_gans_hold_their_frechet_distance(home: Path, name: str, limit: float) -> None:
    torch.set_num_threads(1)
    with Hub.open(home=home) as hub:
        samples = draw_samples(hub.load(name).model, 297, seed=0, sampler=None, steps=None)
        fd = image_set_scores(samples, hub.dataset("digits16", "test"), load_classifier("digits16"), 0, None)["fd"]
    assert fd < limit


def test_cli_generate_writes_a_grid(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    env = {**os.environ, "GENHUB_HOME": str(home), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "hub", "generate", "stylegan-digits", "-n", "16", "-o", str(out)],
                   env=env, check=True, capture_output=True, timeout=300)
    assert Image.open(out).size[0] > 64


def test_the_plain_gan_on_the_grid_is_shipped_beside_stylegan(home: Path) -> None:
    with Hub.open(home=home) as hub:
        for name in ("gan-grid25", "stylegan-grid25"):
            version = hub.resolve(name)
            assert version.dataset == "gmm-grid25" and "pretrained" in version.tags
            points = hub.generate(name, SampleRequest.from_seed(0, 8), log=False).samples
            assert points.shape == (8, 2) and torch.isfinite(points).all()


def test_the_grid_stylegan_covers_the_modes_and_the_plain_gan_stays_the_collapsing_control(home: Path) -> None:
    # Issue #16: StyleGAN's point generator >= 20/25 modes with HQ >= 0.50. As shipped 23/25 at HQ 0.874 over
    # 3 x 2,500 samples (these 1,000, seed 0: 23/25 at HQ 0.889); the 3,000-step recipe before it, 0/25 at HQ 0.010.
    # The plain GAN, the control, collapses (2/25 here).
    with Hub.open(home=home) as hub:
        mixture = hub.mixture("gmm-grid25")
        assert mixture is not None
        styled, plain = (mixture_score(hub.generate(name, SampleRequest.from_seed(0, 1000), log=False).samples, *mixture)
                         for name in ("stylegan-grid25", "gan-grid25"))
        assert hub.resolve("stylegan-grid25").config["z_dim"] == 2  # the recipe that works: a latent on a circle
    assert styled.modes_covered >= 21 and styled.high_quality_share >= 0.75
    assert plain.modes_covered <= 5


def test_training_stylegan_on_points_builds_the_shipped_grid_recipe_by_default(home: Path) -> None:
    # `genhub train stylegan -d gmm-grid25` without --set trains the networks that cover the grid, not the paper's
    # settings that drew a blanket over it (0/25); steps, batch and lr are the card's command's options.
    with Hub.open(home=home) as hub:
        shipped = hub.resolve("stylegan-grid25").config
        default = hub.parts.family("stylegan").default_config(hub.dataset("gmm-grid25", "train"))
    assert json.loads(default.to_json()) == shipped
    assert (default.z_dim, default.g_fourier_octaves, default.d_fourier_octaves, default.mapping_lr_mul) == (2, 6, 6, 1.0)


def test_versions_sharing_weights_each_load_with_their_own_config(home: Path) -> None:
    # The hub caches loaded models by their weights; a version registered on the same weights with another default
    # truncation must not get the model built for the first one.
    with Hub.open(home=home) as hub:
        shipped = hub.resolve("stylegan-digits")
        plugin = hub.registry.get_model("stylegan-digits").plugin
        hub.registry.ensure_model("stylegan-digits-truncated", family="stylegan", plugin=plugin)
        truncated = hub.registry.add_version("stylegan-digits-truncated", artifact_digest=shipped.artifact_digest,
                                             config={**shipped.config, "default_truncation": 0.5},
                                             dataset=shipped.dataset)
        assert hub.load(shipped.ref).model.config.default_truncation == 1.0
        assert hub.load(truncated.ref).model.config.default_truncation == 0.5
        assert hub.load(shipped.ref).model.config.default_truncation == 1.0  # still cached, still its own
        request = SampleRequest.from_seed(0, 8)
        plain, near_mean = hub.generate(shipped.ref, request, log=False), hub.generate(truncated.ref, request, log=False)
        assert not torch.equal(plain.samples, near_mean.samples)
        assert hub.unload(shipped.artifact_digest, "stylegan") == 2  # one cached model per config
