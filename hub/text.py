"""Text encoders: the pluggable part that turns prompts into a conditioning sequence.

A text encoder is a component, like a sampler: one plugin registers it through
``register_text_encoders`` and any text-conditional family can use it. It comes in two
halves so that whatever it learns from data lives in the consuming model's config
(JSON) and weights (safetensors), never in a pickle:

- ``fit(texts)`` looks at a dataset's captions once, before training, and returns JSON
  settings (a vocabulary, say) that the model stores in its config;
- ``build(settings, dim)`` returns a ``torch.nn.Module`` mapping a list of prompts to
  ``(features [N, L, dim], mask [N, L])``. Its parameters, if any, are trained jointly
  with the model and saved with it; a frozen encoder has none or marks them so.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from torch import nn

from hub.errors import NotFound


class TextEncoder(ABC):
    """A factory for text-conditioning modules. Registered by plugins through ``register_text_encoders``."""

    name: str
    description: str = ""
    trainable: bool = True  # whether build()'s module has parameters to train with the model

    @abstractmethod
    def fit(self, texts: list[str]) -> dict[str, Any]:
        """JSON settings learned from a dataset's captions (e.g. a vocabulary); ``{}`` if none."""

    @abstractmethod
    def build(self, settings: dict[str, Any], dim: int) -> nn.Module:
        """A module: ``forward(prompts: list[str]) -> (features [N, L, dim], mask [N, L] bool)``.

        Position 0 of every sequence must be valid (mask True), so an empty prompt still
        attends to something: that is the unconditional input of classifier-free guidance.
        Invalid prompts raise ``hub.errors.InvalidArgument`` naming the field ``prompt``.
        """


class TextEncoderRegistry:
    """Text encoders by name, as registered by plugins."""

    def __init__(self) -> None:
        self._encoders: dict[str, TextEncoder] = {}

    def add(self, encoder: TextEncoder) -> None:
        self._encoders[encoder.name] = encoder

    def get(self, name: str) -> TextEncoder:
        try:
            return self._encoders[name]
        except KeyError:
            raise NotFound(f"no text encoder named {name!r}; available: {sorted(self._encoders)}") from None

    def names(self) -> list[str]:
        return sorted(self._encoders)

    def __contains__(self, name: object) -> bool:
        return name in self._encoders
