"""Tiny random-weight diffusers pipelines, written with ``save_pretrained`` into tmp dirs (no network)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # from_pretrained of a local folder must never reach the network

import diffusers  # noqa: E402  (a dependency of genhub-diffusers)

TINY_UNET = dict(
    sample_size=8, in_channels=3, out_channels=3, block_out_channels=(4, 8), layers_per_block=1, norm_num_groups=4,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=4,
)
SavePipeline = Callable[..., Path]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: a second thread only contends on the shared machine
    yield
    torch.set_num_threads(before)


def tiny_unet(seed: int = 0, **overrides: Any) -> diffusers.UNet2DModel:
    """A UNet2DModel with diffusers' own random init (larger weights amplify float32 rounding past 1e-4)."""
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(**{**TINY_UNET, **overrides})


@pytest.fixture
def save_pipeline(tmp_path: Path) -> SavePipeline:
    """save_pipeline(kind="ddim", seed=0, unet={UNet overrides}, **scheduler_kwargs) -> folder of a saved DDIM/DDPM pipeline."""
    count = iter(range(1000))

    def save(kind: str = "ddim", seed: int = 0, unet: dict[str, Any] | None = None, **scheduler: Any) -> Path:
        folder = tmp_path / f"{kind}-pipeline-{next(count)}"
        network = tiny_unet(seed, **(unet or {}))
        if kind == "ddim":
            pipe = diffusers.DDIMPipeline(unet=network, scheduler=diffusers.DDIMScheduler(**scheduler))
        else:
            pipe = diffusers.DDPMPipeline(unet=network, scheduler=diffusers.DDPMScheduler(**scheduler))
        pipe.save_pretrained(folder)
        return folder

    return save


@pytest.fixture
def save_text_pipeline(tmp_path: Path) -> SavePipeline:
    """save_text_pipeline(kind="ddim", seed=0, **scheduler_kwargs) -> folder of a tiny StableDiffusionPipeline."""
    from genhub_diffusers.testing import save_text_pipeline

    count = iter(range(1000))
    return lambda kind="ddim", seed=0, **scheduler: save_text_pipeline(tmp_path / f"sd-{kind}-{next(count)}", kind, seed, **scheduler)


Cli = Callable[..., "tuple[int, str, str]"]


@pytest.fixture
def cli(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """cli(home, *args): `genhub ARGS` in this process (start-up, diffusers' import included, paid once) -> (exit code,
    stdout, stderr); only the ddpm and diffusers plugins load (no other bundled checkpoints to sync)."""
    from hub.testing import run_cli

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("GENHUB_LOAD_PLUGINS", "ddpm,diffusers")
    return lambda home, *args: run_cli(capfd, home, *args)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Any]:
    from hub.core import Hub

    with Hub.open(db_url=f"sqlite:///{tmp_path}/r.db", home=tmp_path / "home", sync=False) as opened:
        yield opened
