"""Stable Diffusion layout (UNet2DConditionModel + AutoencoderKL + CLIP text encoder and tokenizer): imported,
sampled through genhub's samplers and engine with classifier-free guidance, equal to StableDiffusionPipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from hub.model import SampleRequest

from genhub_diffusers import import_pipeline
from genhub_diffusers.pipeline import UnsupportedPipeline
from genhub_diffusers.testing import MAX_TOKENS

import diffusers

SEEDS = [7, 8]
PROMPTS = ["a red circle", "blue square at the top"]


def pipeline_images(pipe: Any, steps: int, prompts: list[str], guidance: float, **kwargs: Any) -> torch.Tensor:
    generators = [torch.Generator().manual_seed(s) for s in SEEDS]
    images = pipe(prompts, generator=generators, num_inference_steps=steps, guidance_scale=guidance, output_type="np",
                  **kwargs).images
    return torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2) * 2 - 1


@pytest.mark.parametrize(("kind", "scheduler", "guidance"), [
    ("ddim", {}, 7.5),  # the pipeline's default guidance; uncond and cond rows in one pass
    ("ddpm", {"num_train_timesteps": 100, "prediction_type": "v_prediction"}, 1.0),  # ancestral, step noise per row; unguided
    ("ddim", {"clip_sample": True, "steps_offset": 0}, 3.0),  # an outdated file: the pipeline fixes both when it loads
])
def test_samples_equal_the_stable_diffusion_pipeline(hub: Any, save_text_pipeline: Any, kind: str, scheduler: dict[str, Any],
                                                     guidance: float) -> None:
    folder = save_text_pipeline(kind, **scheduler)
    path = folder / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **scheduler}))  # as given (save_pretrained fixed them)
    expected = pipeline_images(diffusers.StableDiffusionPipeline.from_pretrained(folder), 10, PROMPTS, guidance)
    version = import_pipeline(hub, folder, "tiny-sd")
    request = SampleRequest(seeds=SEEDS, steps=10, prompts=PROMPTS, guidance_scale=guidance)
    ours = hub.generate(version.ref, request, log=False).samples
    assert ours.shape == (2, 3, 16, 16) and expected.std() > 0.05
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)


def test_negative_prompts_equal_the_pipeline_and_need_a_prompt(hub: Any, save_text_pipeline: Any) -> None:
    """A negative prompt conditions the unconditional half of each guided pass (the pipeline's negative_prompt)."""
    from hub.errors import InvalidArgument

    folder = save_text_pipeline()
    negatives = ["blurry", "green"]
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder)
    expected = pipeline_images(pipe, 10, PROMPTS, 5.0, negative_prompt=negatives)
    version = import_pipeline(hub, folder, "tiny-sd")
    ours = hub.generate(version.ref, SampleRequest(seeds=SEEDS, steps=10, prompts=PROMPTS, negative_prompts=negatives,
                                                   guidance_scale=5.0), log=False).samples
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)
    assert (ours - pipeline_images(pipe, 10, PROMPTS, 5.0)).abs().max() > 1e-2  # it changes the images
    with pytest.raises(InvalidArgument, match="negative_prompts: a negative prompt needs a prompt"):
        hub.generate(version.ref, SampleRequest(seeds=SEEDS, steps=2, negative_prompts=negatives), log=False)


def test_requests_batched_pass_by_pass_sample_what_they_do_alone(hub: Any, save_text_pipeline: Any) -> None:
    """Guided, unguided and prompt-less requests share each network pass (text states concatenated row-wise)."""
    from hub.stepping import run_pass

    model = hub.load(import_pipeline(hub, save_text_pipeline(), "stepped").ref).model
    requests = [SampleRequest(seeds=[1, 2], steps=4, prompts=PROMPTS, guidance_scale=3.0),
                SampleRequest(seeds=[3], steps=6, sampler="ddpm"),
                SampleRequest(seeds=[4], steps=5, prompts=["red"], guidance_scale=1.0, eta=0.5)]
    alone = [model.sample(r) for r in requests]
    trajectories = [model.begin(r) for r in requests]
    assert [t.rows for t in trajectories] == [4, 1, 1]  # only the guided request doubles its rows
    while active := [tr for tr in trajectories if not tr.finished]:
        assert not any(isinstance(e, Exception) for e in run_pass(model, active))
    for trajectory, expected in zip(trajectories, alone):
        torch.testing.assert_close(trajectory.result(), expected, atol=1e-4, rtol=0)
    assert model.sample_cost(requests[0]).rows == 4 and model.sample_cost(requests[1]).rows == 1
    assert (alone[0][0] - model.sample(SampleRequest(seeds=[1], steps=4, prompts=["blue"], guidance_scale=3.0))[0]).abs().max() > 1e-3


def test_cli_and_grpc_server_generate_from_a_prompt(tmp_path: Path, save_text_pipeline: Any, cli: Any) -> None:
    from hub.core import Hub
    from hub.errors import InvalidArgument
    from hub.server.app import BackgroundServer

    home, folder, grid = tmp_path / "home", save_text_pipeline(), tmp_path / "grid.png"
    code, out, err = cli(home, "import", "diffusers", str(folder), "--name", "tiny-sd")
    assert code == 0 and "registered tiny-sd:1" in out, err
    code, shown, _ = cli(home, "models", "show", "tiny-sd")
    assert "StableDiffusionPipeline" in shown and f'"source": "{folder.resolve()}"' in shown.replace("\n", "")
    code, out, err = cli(home, "generate", "tiny-sd", "-n", "2", "--steps", "4", "--prompt", "a red circle", "--guidance", "3",
                         "--negative-prompt", "blue", "-o", str(grid))
    assert code == 0, err
    assert np.asarray(Image.open(grid)).std() > 5  # a picture, not a blank
    code, _, err = cli(home, "generate", "tiny-sd", "--steps", "2", "--prompt", "x" * (MAX_TOKENS - 1), "-o", str(grid))
    assert code == 1 and "Traceback" not in err and f"prompt: is {MAX_TOKENS + 1} tokens, more than this model's {MAX_TOKENS}" in err
    with Hub.open(home=home, sync=False) as hub:
        server = BackgroundServer(hub, "127.0.0.1:0")
        try:
            with server.client(timeout=120) as client:
                remote = client.generate("tiny-sd", num_samples=2, seed=5, steps=4, prompt="blue", guidance_scale=3.0,
                                         negative_prompt="red", format="tensor")
                with pytest.raises(InvalidArgument, match="class_label: this model is not class-conditional"):
                    client.generate("tiny-sd", class_label=1, steps=2)
                with pytest.raises(InvalidArgument, match="prompt: is .* tokens"):
                    client.generate("tiny-sd", prompt="y" * 100, steps=2)
        finally:
            server.stop(grace_s=1.0)
        request = SampleRequest.from_seed(5, 2, steps=4, prompts=["blue"] * 2, negative_prompts=["red"] * 2, guidance_scale=3.0)
        expected = hub.generate("tiny-sd", request, log=False).samples
    assert remote.samples.shape == (2, 3, 16, 16)
    torch.testing.assert_close(remote.samples, expected, atol=1e-5, rtol=0)


def test_refusals_name_the_component(hub: Any, save_text_pipeline: Any) -> None:
    folder = save_text_pipeline()
    index = json.loads((folder / "model_index.json").read_text())
    spoiled = {
        "safety_checker": ({**index, "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"]},
                           "has a safety_checker .*re-save it with safety_checker=None"),
        "text_encoder": ({**index, "text_encoder": ["transformers", "CLIPTextModelWithProjection"]},
                         r"unsupported: text_encoder\).*text_encoder \(transformers.CLIPTextModel\)"),
        "vae": ({k: v for k, v in index.items() if k != "vae"}, r"\(missing: vae\)"),
    }
    for what, (model_index, message) in spoiled.items():
        (folder / "model_index.json").write_text(json.dumps(model_index))
        with pytest.raises(UnsupportedPipeline, match=message):
            import_pipeline(hub, folder, "refused")
    (folder / "model_index.json").write_text(json.dumps(index))
    unet = json.loads((folder / "unet" / "config.json").read_text())
    (folder / "unet" / "config.json").write_text(json.dumps({**unet, "time_cond_proj_dim": 8}))
    with pytest.raises(UnsupportedPipeline, match="UNet2DConditionModel time_cond_proj_dim=8 is not supported"):
        import_pipeline(hub, folder, "refused")
    assert hub.registry.list_models()[0] == [] and list(hub.artifacts.digests()) == []
