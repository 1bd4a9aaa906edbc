"""The family-independent parts of the model interface."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from dataclasses import dataclass

import pytest
import torch

from hub.errors import Cancelled, InvalidArgument
from hub.model import ModelConfig, NoiseSource, SampleRequest, StepEvent, per_sample_seeds, report_step


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


def test_the_batching_key_the_merged_request_and_the_log_follow_the_request_fields() -> None:
    base = SampleRequest(seeds=[1, 2], class_labels=[0, 1], params={"k": 1})
    assert base.batch_key() == SampleRequest(seeds=[9], class_labels=[5], params={"k": 1}).batch_key()  # per-sample
    for change in (dict(sampler="ddim"), dict(steps=3), dict(eta=0.5), dict(guidance_scale=2.0), dict(truncation=0.7),
                   dict(preview_every=1), dict(params={"k": 1.0}), dict(params={"k": True}), dict(class_labels=None),
                   dict(prompts=["a", "b"])):
        assert dataclasses.replace(base, **change).batch_key() != base.batch_key(), change
    merged = SampleRequest.concat([base, SampleRequest(seeds=[3], class_labels=[7], params={"k": 1})])
    assert (merged.seeds, merged.class_labels, merged.prompts, merged.params) == ([1, 2, 3], [0, 1, 7], None, {"k": 1})
    logged = base.logged()
    assert set(logged) == {f.name for f in dataclasses.fields(SampleRequest)} - {"preview_every"}
    assert logged["class_labels"] == [0, 1] and logged["params"] == {"k": 1}


def test_a_new_request_field_is_in_the_key_and_the_log_without_other_changes() -> None:
    @dataclasses.dataclass
    class WithStrength(SampleRequest):
        strength: float = 1.0

    a, b = WithStrength(seeds=[1]), WithStrength(seeds=[1], strength=0.5)
    assert a.batch_key() != b.batch_key() and b.logged()["strength"] == 0.5
    assert WithStrength.concat([b, WithStrength(seeds=[2], strength=0.5)]).strength == 0.5


def test_the_client_imports_its_codecs_from_hub_codecs_not_from_the_server() -> None:
    code = "import sys, hub.client; print(sorted(m for m in sys.modules if m.startswith('hub.server.')))"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "hub.server.convert" not in shown and "hub.server.requests" not in shown, shown
