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


LETTERS = "abcdefghijklmnopqrstuvwxyz"
MAX_TOKENS = 24  # the tiny tokenizer's model_max_length: start, up to 22 letters, end


def tiny_tokenizer() -> Any:
    """A CLIPTokenizer over single letters (no merges), written in the test: no download."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in LETTERS:
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=MAX_TOKENS)


@pytest.fixture
def save_text_pipeline(tmp_path: Path) -> SavePipeline:
    """save_text_pipeline(kind="ddim", seed=0, **scheduler_kwargs) -> folder of a tiny StableDiffusionPipeline
    (8x8x4 latents, 16x16 images) with that scheduler, saved as save_pretrained writes it."""
    from transformers import CLIPTextConfig, CLIPTextModel

    count = iter(range(1000))

    def save(kind: str = "ddim", seed: int = 0, **scheduler: Any) -> Path:
        folder = tmp_path / f"sd-{kind}-{next(count)}"
        torch.manual_seed(seed)
        unet = diffusers.UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, block_out_channels=(4, 8), layers_per_block=1, norm_num_groups=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=16, attention_head_dim=2,
        )
        vae = diffusers.AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(4, 8), norm_num_groups=2, sample_size=16,
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=2 + 2 * len(LETTERS), hidden_size=16, intermediate_size=24, num_attention_heads=2, num_hidden_layers=2,
            max_position_embeddings=MAX_TOKENS, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        ))
        sampler = diffusers.DDIMScheduler(**scheduler) if kind == "ddim" else diffusers.DDPMScheduler(**scheduler)
        diffusers.StableDiffusionPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tiny_tokenizer(), unet=unet, scheduler=sampler,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        ).save_pretrained(folder)
        return folder

    return save


Cli = Callable[..., "tuple[int, str, str]"]


@pytest.fixture
def cli(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """cli(home, *args): `genhub ARGS` in this process (start-up, diffusers' import included, paid once) -> (exit code,
    stdout, stderr); only the ddpm and diffusers plugins load (no other bundled checkpoints to sync)."""
    from hub.cli import main

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("GENHUB_LOAD_PLUGINS", "ddpm,diffusers")

    def run(home: Path, *args: str) -> tuple[int, str, str]:
        try:
            main(["--home", str(home), *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capfd.readouterr()
        return code, out, err

    return run


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Any]:
    from hub.core import Hub

    with Hub.open(db_url=f"sqlite:///{tmp_path}/r.db", home=tmp_path / "home", sync=False) as opened:
        yield opened
