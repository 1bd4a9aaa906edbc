"""The shipped checkpoints: vae-shapes reconstructs held-out shapes, ldm-shapes follows its prompt.

The judge is the shapes classifier that ships with genhub's evaluation (hub/eval/weights/shapes.*, 48 classes =
shape x colour x position, held-out accuracy 0.9975, trained by `python -m hub.eval.train_classifier --dataset shapes`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from hub.client import Client
from hub.core import Hub
from hub.eval.classifier import load_classifier
from hub.images import grid
from hub.model import SampleRequest
from hub.server.app import BackgroundServer

PROMPT = "a blue square, bottom right"
PROMPT_CLASS = 27  # (square=1 * 4 colours + blue=2) * 4 positions + bottom right=3
RECON_MSE_BOUND = 0.003  # on [-1, 1] images (PSNR above 31 dB); the shipped vae measures 0.0006
STEPS = 25


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("genhub-ldm-pretrained")


@pytest.fixture(scope="module")
def hub(home: Path) -> Iterator[Hub]:
    torch.set_num_threads(1)
    with Hub.open(home=home) as opened:
        yield opened


def predicted(images: torch.Tensor) -> torch.Tensor:
    _, logits = load_classifier("shapes").features_and_logits(images)
    return logits.argmax(dim=1)


def test_the_bundled_denoiser_is_registered_with_its_autoencoder_as_parent(hub: Hub) -> None:
    ldm = hub.resolve("ldm-shapes")
    assert ldm.parent == "vae-shapes:1" and ldm.config["autoencoder"] == "vae-shapes:1"
    assert "pretrained" in ldm.tags and hub.resolve("vae-shapes:1").family == "vae"


def test_the_autoencoder_reconstructs_held_out_shapes(hub: Hub) -> None:
    vae = hub.load("vae-shapes:1").model
    test = hub.dataset("shapes", "test").data
    mse = torch.mean((vae.reconstruct(test) - test) ** 2).item()
    assert mse < RECON_MSE_BOUND
    assert (predicted(vae.reconstruct(test[:480])) == hub.dataset("shapes", "test").labels[:480]).float().mean() > 0.95


def test_guidance_makes_samples_follow_the_condition(hub: Hub) -> None:
    labels = list(range(48))  # each of the 48 conditions once
    agreement = {}
    for scale in (0.0, 3.0):
        request = SampleRequest.from_seed(11, len(labels), steps=STEPS, class_labels=labels, guidance_scale=scale)
        samples = hub.generate("ldm-shapes", request, log=False).samples
        agreement[scale] = (predicted(samples) == torch.tensor(labels)).float().mean().item()
    assert agreement[3.0] >= 0.9, agreement
    assert agreement[3.0] >= agreement[0.0] + 0.5, agreement  # guidance 0 is the unconditional model


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_cli_generate_with_a_prompt_draws_that_prompt(hub: Hub, home: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    env = {**os.environ, "GENHUB_HOME": str(home), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "hub", "generate", "ldm-shapes", "--prompt", PROMPT, "-n", "16", "--seed", "4",
           "--steps", str(STEPS), "-o", str(out)]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)
    samples = hub.generate("ldm-shapes", SampleRequest.from_seed(4, 16, steps=STEPS, prompts=[PROMPT] * 16), log=False).samples
    assert (predicted(samples) == PROMPT_CLASS).sum().item() >= 14
    expected = np.asarray(grid(samples).convert("RGB"), dtype=np.int16)
    assert np.abs(_png(out) - expected).max() <= 1  # the grid written is of those samples


def test_grpc_generate_with_a_prompt_draws_that_prompt(hub: Hub) -> None:
    server = BackgroundServer(hub, "127.0.0.1:0")
    try:
        with server.client(timeout=300) as client:
            result = client.generate("ldm-shapes", num_samples=16, seed=4, steps=STEPS, prompt=PROMPT, format="tensor")
    finally:
        server.stop(grace_s=1.0)
    assert result.model == "ldm-shapes:1"
    assert (predicted(result.samples) == PROMPT_CLASS).sum().item() >= 14
