"""The family-independent parts of the model interface."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from hub.errors import Cancelled, InvalidArgument
from hub.model import ModelConfig, NoiseSource, StepEvent, per_sample_seeds, report_step


@dataclass
class TinyConfig(ModelConfig):
    sample_shape: tuple = (1, 8, 8)
    width: int = 4


def test_config_round_trips_through_json_and_rejects_unknown_keys() -> None:
    config = TinyConfig(width=7)
    assert TinyConfig.from_json(config.to_json()) == config
    assert config.replace(width=9).width == 9
    with pytest.raises(InvalidArgument, match="unknown key.*wdith.*known keys"):
        config.replace(wdith=9)


def test_image_seeds_depend_only_on_request_seed_and_index() -> None:
    assert per_sample_seeds(5, 3) == per_sample_seeds(5, 6)[:3]
    assert len(set(per_sample_seeds(0, 100) + per_sample_seeds(1, 100))) == 200
    with pytest.raises(InvalidArgument, match="seed"):
        per_sample_seeds(-1, 1)


def test_noise_rows_do_not_depend_on_the_batch() -> None:
    a, b = per_sample_seeds(1, 1)[0], per_sample_seeds(2, 1)[0]
    together = NoiseSource([a, b]).randn(3, 4)
    assert torch.equal(together[0], NoiseSource([a]).randn(3, 4)[0])
    assert torch.equal(together[1], NoiseSource([b]).randn(3, 4)[0])


def test_a_callback_returning_false_stops_the_loop() -> None:
    seen: list[int] = []
    report_step(lambda e: seen.append(e.step), StepEvent(1, 3))
    report_step(None, StepEvent(2, 3))
    with pytest.raises(Cancelled, match="step 3 of 3"):
        report_step(lambda e: False, StepEvent(3, 3))
    assert seen == [1]
