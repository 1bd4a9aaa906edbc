"""The two text encoders: vocabulary handling, unknown words, the empty prompt, frozen vs trained."""

from __future__ import annotations

import pytest
import torch

from hub.errors import InvalidArgument
from genhub_ldm.text import CharGramEncoder, VocabEncoder, words

CAPTIONS = ["a red circle, top left", "a blue square, bottom right"]


def test_words_ignore_case_and_punctuation() -> None:
    assert words("A Red circle,  TOP-left!") == ["a", "red", "circle", "top", "left"]


def test_vocab_is_fitted_from_captions_and_encodes_with_a_start_token() -> None:
    enc = VocabEncoder()
    settings = enc.fit(CAPTIONS)
    assert settings["vocabulary"] == sorted({"a", "red", "circle", "top", "left", "blue", "square", "bottom", "right"})
    module = enc.build(settings, dim=16)
    feats, mask = module(["A red circle, top left", ""])
    assert feats.shape == (2, 6, 16)
    assert mask.tolist() == [[True] * 6, [True] + [False] * 5]  # the empty prompt is the start token alone
    assert sum(p.numel() for p in module.parameters()) > 0  # trained with the model


def test_vocab_rejects_unknown_words_naming_them_and_the_vocabulary() -> None:
    module = VocabEncoder().build(VocabEncoder().fit(CAPTIONS), dim=16)
    with pytest.raises(InvalidArgument) as err:
        module(["a purple circle"])
    assert err.value.field == "prompt"
    assert "'purple'" in str(err.value) and "circle" in str(err.value)


def test_prompts_longer_than_the_limit_are_rejected() -> None:
    module = VocabEncoder().build(VocabEncoder().fit(CAPTIONS), dim=16)
    with pytest.raises(InvalidArgument, match="more than this model's limit of 16"):
        module([" ".join(["red"] * 17)])


def test_chargram_is_frozen_deterministic_and_accepts_any_word() -> None:
    enc = CharGramEncoder()
    a = enc.build(enc.fit(CAPTIONS), dim=32)
    b = enc.build({}, dim=32)
    feats_a, mask_a = a(["a purple hexagon", "a red circle"])
    feats_b, _ = b(["a purple hexagon", "a red circle"])
    assert list(a.parameters()) == [] and a.state_dict() == {}  # nothing to train, nothing to save
    assert torch.equal(feats_a, feats_b)
    assert mask_a.tolist() == [[True] * 4, [True] * 4]
    assert not torch.allclose(feats_a[0, 2], feats_a[1, 2])  # different words, different features


def test_the_plugin_registers_both_encoders_through_the_hook() -> None:
    from hub.plugins import load_plugins

    _, parts = load_plugins()
    assert {"vocab", "chargram"} <= set(parts.text_encoders.names())
    assert parts.owners[("text encoder", "vocab")] == "ldm"
