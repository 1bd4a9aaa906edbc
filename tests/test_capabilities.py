"""Typed capabilities: what a model accepts, checked in one place; inference-only families."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hub.capabilities import Capabilities, Param
from hub.core import Hub
from hub.errors import FailedPrecondition, InvalidArgument, NotFound
from hub.model import (
    InferenceModel,
    NoiseSource,
    PretrainedModel,
    SampleRequest,
    TrainOptions,
    can_train,
    simple_family,
)

DIFFUSION = Capabilities(sample_shape=(1, 8, 8), samplers=("ddim", "ddpm"), default_sampler="ddim", max_steps=100,
                         default_steps=20, eta=True, num_classes=3, guidance=True)
ONE_PASS = Capabilities(output_kind="points", sample_shape=(2,), samplers=("gan",), truncation=True,
                        params={"mix_seed": Param(int, "a second style", min=0),
                                "noise_mode": Param(str, default="const", choices=("const", "random")),
                                "scale": Param(float, max=2.0), "sharpen": Param(bool)})


def request(**fields: object) -> SampleRequest:
    return SampleRequest(**{"seeds": [1, 2], **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(("caps", "fields", "field", "text"), [
    (DIFFUSION, dict(steps=101), "steps", "between 1 and 100, got 101"),
    (DIFFUSION, dict(class_labels=[0, 3]), "class_labels", r"\[3\] are out of range; they must be in \[0, 2\]"),
    (DIFFUSION, dict(class_labels=[0]), "class_labels", "one label per seed"),
    (DIFFUSION, dict(prompts=["a", "b"]), "prompts", "not text-conditional; use a class label"),
    (DIFFUSION, dict(guidance_scale=2.0), "guidance_scale", "needs a condition.*class_labels"),
    (DIFFUSION, dict(guidance_scale=-1.0, class_labels=[0, 1]), "guidance_scale", ">= 0"),
    (DIFFUSION, dict(truncation=0.5), "truncation", "no truncation"),
    (DIFFUSION, dict(negative_prompts=["x", "y"], class_labels=[0, 1]), "negative_prompts", "takes no negative prompt"),
    (DIFFUSION, dict(params={"x": 1}), "params", "unknown parameter 'x'.*known: none"),
    (DIFFUSION, dict(seeds=[]), "seeds", "at least one"),
    (DIFFUSION, dict(preview_every=-1), "preview_every", ">= 0"),
    (ONE_PASS, dict(sampler="ddim"), "sampler", "no samplers to choose from"),
    (ONE_PASS, dict(steps=2), "steps", "exactly 1 step;"),
    (ONE_PASS, dict(eta=0.5), "eta", "DDIM option"),
    (ONE_PASS, dict(class_labels=[0, 0]), "class_labels", "not class-conditional"),
    (ONE_PASS, dict(guidance_scale=1.0), "guidance_scale", "no classifier-free guidance"),
    (ONE_PASS, dict(truncation=float("nan")), "truncation", "finite"),
    (ONE_PASS, dict(params={"mix_seed": -1}), "params[mix_seed]", "between 0 and inf"),
    (ONE_PASS, dict(params={"mix_seed": 1.5}), "params[mix_seed]", "integer"),
    (ONE_PASS, dict(params={"mix_seed": True}), "params[mix_seed]", "integer"),
    (ONE_PASS, dict(params={"noise_mode": "loud"}), "params[noise_mode]", r"'loud' is not one of \['const', 'random'\]"),
    (ONE_PASS, dict(params={"scale": 3}), "params[scale]", "between -inf and 2"),
    (ONE_PASS, dict(params={"scale": "big"}), "params[scale]", "finite number"),
    (ONE_PASS, dict(params={"sharpen": 1}), "params[sharpen]", "true or false"),
    (ONE_PASS, dict(params={"mixx": 1}), "params", "unknown parameter 'mixx'.*mix_seed: int, in \\[0, inf\\]: a second style"),
])
def test_unsupported_fields_are_invalid_argument_naming_the_field(caps: Capabilities, fields: dict, field: str, text: str) -> None:
    with pytest.raises(InvalidArgument, match=text) as raised:
        caps.check(request(**fields))
    assert raised.value.field == field


def test_supported_requests_pass_and_params_come_back_typed() -> None:
    DIFFUSION.check(request(sampler="ddpm", steps=100, eta=1.0, class_labels=[0, 2], guidance_scale=3.0))
    ok = request(truncation=0.7, params={"mix_seed": 3.0, "scale": 1, "sharpen": True}, sampler="gan", steps=1)
    ONE_PASS.check(ok)
    assert ONE_PASS.param(ok, "mix_seed") == 3 and isinstance(ONE_PASS.param(ok, "mix_seed"), int)
    assert ONE_PASS.param(ok, "scale") == 1.0 and isinstance(ONE_PASS.param(ok, "scale"), float)
    assert ONE_PASS.param(ok, "noise_mode") == "const"  # the default


def test_an_unknown_sampler_is_not_found_and_defaults_resolve() -> None:
    with pytest.raises(NotFound, match=r"no sampler named 'euler'.*\['ddim', 'ddpm'\]"):
        DIFFUSION.check(request(sampler="euler"))
    assert DIFFUSION.resolved(None, None) == ("ddim", 20)
    assert DIFFUSION.resolved("ddpm", None) == ("ddpm", None)  # that sampler's own default
    assert ONE_PASS.resolved(None, None) == (None, 1)


def test_inconsistent_capabilities_fail_when_declared() -> None:
    with pytest.raises(ValueError, match="default_sampler"):
        Capabilities(samplers=("ddim",), default_sampler="ddpm")
    with pytest.raises(ValueError, match="min_steps <= default_steps"):
        Capabilities(max_steps=4, default_steps=5)
    with pytest.raises(TypeError, match="Param.type"):
        Param(list)


class Constant(InferenceModel):
    """A fixed image: the weights are the image."""

    capabilities = Capabilities(output_kind="image", sample_shape=(1, 2, 2))

    def sample(self, request, callback=None):  # type: ignore[no-untyped-def]
        noise = NoiseSource(request.seeds, self.device).randn(1, 2, 2)
        return (self.weights["image"] + 0.0 * noise).clamp(-1, 1)


def test_an_inference_only_family_registers_fixed_weights_and_generates_but_cannot_train(tmp_path: Path) -> None:
    family = simple_family("constant", Constant)
    assert family.description == "A fixed image: the weights are the image." and not can_train(Constant)
    image = torch.tensor([[[0.5, -0.5], [0.25, 1.0]]])
    weights = PretrainedModel.from_weights("constant-image", "constant", {"image": image})

    class Plugin:
        from hub import hookimpl

        @hookimpl
        def register_models(self, register):  # type: ignore[no-untyped-def]
            register(family)

        @hookimpl
        def register_pretrained(self, register):  # type: ignore[no-untyped-def]
            register(weights)

    with Hub.open(home=tmp_path, extra_plugins=[("constant", Plugin())]) as hub:
        version = hub.resolve("constant-image")
        assert version.dataset == "external" and version.family == "constant"
        hub.sync()  # idempotent: the same tensors give the same digest
        assert len(hub.registry.list_versions("constant-image")) == 1
        out = hub.generate("constant-image", SampleRequest.from_seed(0, 3)).samples
        torch.testing.assert_close(out, image.expand(3, 1, 2, 2))
        with pytest.raises(InvalidArgument, match="class_labels"):  # the hub checks before sampling
            hub.generate("constant-image", SampleRequest.from_seed(0, 1, class_labels=[0]))
        hub.generation_log.flush()  # records reach the database in the background
        assert hub.registry.generations(limit=1)[0].status == "InvalidArgument"
        with pytest.raises(FailedPrecondition, match="only samples"):
            hub.train("constant", "digits", model_name="c", options=TrainOptions(steps=1))
        assert [m.name for m in hub.registry.list_models()[0]].count("c") == 0
