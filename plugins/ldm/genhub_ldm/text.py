"""The text encoders this plugin registers: ``vocab`` (trained jointly) and ``chargram`` (frozen).

Both map a prompt to a sequence whose position 0 is a learned or fixed start token, so the empty
prompt (classifier-free guidance's unconditional input) is a valid one-token sequence.
"""

from __future__ import annotations

import math
import re
import zlib
from typing import Any

import torch
from torch import nn

from hub.errors import InvalidArgument
from hub.text import TextEncoder

MAX_WORDS = 16  # words per prompt the encoders accept (the shapes captions have 5)
WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lower-cased alphanumeric words: punctuation and case do not matter ("A red circle, top-left")."""
    return WORD.findall(text.lower())


def _check_length(prompt: str, found: list[str], limit: int) -> None:
    if len(found) > limit:
        raise InvalidArgument("prompt", f"has {len(found)} words, more than this model's limit of {limit}: {prompt[:80]!r}")


def _sinusoid(length: int, dim: int) -> torch.Tensor:
    """Fixed sinusoidal position codes, [length, dim]."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    out = torch.zeros(length, dim)
    out[:, 0::2] = torch.sin(pos * freqs)
    out[:, 1::2] = torch.cos(pos * freqs)[:, : dim // 2]
    return out


class VocabTextModule(nn.Module):
    """Token embeddings + learned positions + a small pre-norm transformer; unknown words are an error."""

    PAD, START = 0, 1

    def __init__(self, vocabulary: list[str], max_words: int, dim: int, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.vocabulary = list(vocabulary)
        self.index = {w: i + 2 for i, w in enumerate(self.vocabulary)}
        self.max_words = max_words
        self.tokens = nn.Embedding(len(self.vocabulary) + 2, dim)
        self.positions = nn.Parameter(torch.randn(max_words + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """([N, L] token ids, [N, L] valid mask), L = 1 + the longest prompt's word count."""
        rows: list[list[int]] = []
        for prompt in prompts:
            found = words(prompt)
            _check_length(prompt, found, self.max_words)
            unknown = sorted({w for w in found if w not in self.index})
            if unknown:
                raise InvalidArgument(
                    "prompt",
                    f"unknown word(s) {unknown} in {prompt[:80]!r}; this model knows only the words of its training "
                    f"captions: {' '.join(self.vocabulary)}",
                )
            rows.append([self.START] + [self.index[w] for w in found])
        length = max(len(r) for r in rows)
        ids = torch.tensor([r + [self.PAD] * (length - len(r)) for r in rows], dtype=torch.long)
        return ids, ids != self.PAD

    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenize(prompts)
        ids, mask = ids.to(self.positions.device), mask.to(self.positions.device)
        x = self.tokens(ids) + self.positions[: ids.shape[1]]
        x = self.encoder(x, src_key_padding_mask=~mask)
        return self.norm(x), mask


class VocabEncoder(TextEncoder):
    name = "vocab"
    description = "word embeddings over the training captions' vocabulary + a 2-layer transformer, trained with the model"
    trainable = True

    def fit(self, texts: list[str]) -> dict[str, Any]:
        vocabulary = sorted({w for t in texts for w in words(t)})
        if not vocabulary:
            raise InvalidArgument("dataset", "the 'vocab' text encoder needs captions (or class names) with at least one word")
        return {"vocabulary": vocabulary, "max_words": MAX_WORDS}

    def build(self, settings: dict[str, Any], dim: int) -> nn.Module:
        return VocabTextModule(settings["vocabulary"], int(settings.get("max_words", MAX_WORDS)), dim)


class CharGramTextModule(nn.Module):
    """Hashed character trigrams per word, a fixed random projection, fixed positions: no parameters at all.

    Any word is accepted (an unseen word still has trigrams), which suits open prompts; the model's
    cross-attention learns what to read from these fixed features.
    """

    BUCKETS = 4096

    def __init__(self, dim: int, max_words: int, seed: int = 0) -> None:
        super().__init__()
        self.max_words = max_words
        gen = torch.Generator().manual_seed(seed)
        # Not persistent: rebuilt from the seed, so checkpoints do not carry a 4096 x dim constant.
        self.register_buffer("projection", torch.randn(self.BUCKETS, dim, generator=gen) / math.sqrt(dim), persistent=False)
        self.register_buffer("start", torch.randn(dim, generator=gen), persistent=False)
        self.register_buffer("pos", _sinusoid(max_words + 1, dim), persistent=False)

    def _bag(self, word: str) -> torch.Tensor:
        marked = f"#{word}#"
        grams = [marked[i : i + 3] for i in range(len(marked) - 2)]
        bag = torch.zeros(self.BUCKETS)
        for gram in grams:
            bag[zlib.crc32(gram.encode()) % self.BUCKETS] += 1.0
        return bag / bag.norm()

    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.projection.device
        split = [words(p) for p in prompts]
        for prompt, found in zip(prompts, split):
            _check_length(prompt, found, self.max_words)
        length = 1 + max(len(s) for s in split)
        feats = torch.zeros(len(prompts), length, self.projection.shape[1], device=device)
        mask = torch.zeros(len(prompts), length, dtype=torch.bool, device=device)
        feats[:, 0] = self.start
        mask[:, 0] = True
        for i, found in enumerate(split):
            if found:
                bags = torch.stack([self._bag(w) for w in found]).to(device)
                feats[i, 1 : 1 + len(found)] = bags @ self.projection * math.sqrt(self.projection.shape[1])
                mask[i, 1 : 1 + len(found)] = True
        return feats + self.pos[:length], mask


class CharGramEncoder(TextEncoder):
    name = "chargram"
    description = "frozen hashed character trigrams: no vocabulary, no training, any word accepted"
    trainable = False

    def fit(self, texts: list[str]) -> dict[str, Any]:
        return {"max_words": MAX_WORDS}

    def build(self, settings: dict[str, Any], dim: int) -> nn.Module:
        return CharGramTextModule(dim, int(settings.get("max_words", MAX_WORDS)))
