"""A tiny random-weight StableDiffusionPipeline written with ``save_pretrained``, for tests (this plugin's and the
hub's Ray tests): every part is built here, the tokenizer from a vocabulary written in code, so nothing is downloaded.
Needs the ``text`` extra (transformers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

LETTERS = "abcdefghijklmnopqrstuvwxyz"
MAX_TOKENS = 24  # the tiny tokenizer's model_max_length: start, up to 22 letters, end


def tiny_tokenizer() -> Any:
    """A CLIPTokenizer over single letters (no merges): every letter of a word is one token."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in LETTERS:
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=MAX_TOKENS)


def save_text_pipeline(folder: Path, kind: str = "ddim", seed: int = 0, **scheduler: Any) -> Path:
    """Write a StableDiffusionPipeline (8x8x4 latents, 16x16 images; a DDIM or DDPM scheduler with ``scheduler``'s
    arguments) to ``folder``, as ``save_pretrained`` writes it; returns ``folder``."""
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel

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
