"""`genhub import diffusers`: what it registers, what it refuses, and that the model serves through CLI and gRPC."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from hub.errors import AlreadyExists, InvalidArgument
from hub.model import SampleRequest
from hub.server.app import BackgroundServer
from hub.testing import run_cli as genhub  # `genhub ARGS` in this process: diffusers' import paid once

from genhub_diffusers import import_pipeline
from genhub_diffusers.pipeline import UnsupportedPipeline

import diffusers


def test_import_registers_weights_configs_and_source(hub: Any, save_pipeline: Any) -> None:
    folder = save_pipeline("ddim")
    version = import_pipeline(hub, folder, "tiny-ddim")
    assert (version.model, version.version, version.family) == ("tiny-ddim", 1, "diffusers")
    assert version.config["model_index"] == json.loads((folder / "model_index.json").read_text())
    assert version.config["unet"] == json.loads((folder / "unet" / "config.json").read_text())
    assert version.config["scheduler"] == json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert version.config["source"] == str(folder.resolve())
    assert str(folder.resolve()) in (version.card or "") and "DDIMPipeline" in (version.card or "")
    stored = hub.artifacts.get(version.artifact_digest)  # safetensors in the content-addressed store
    original = diffusers.UNet2DModel.from_pretrained(folder / "unet").state_dict()
    assert set(stored) == {"unet." + k for k in original}
    assert all(torch.equal(stored["unet." + k], v) for k, v in original.items())
    again = import_pipeline(hub, folder, "tiny-ddim")  # same bytes: a new version, the same artifact
    assert again.version == 2 and again.artifact_digest == version.artifact_digest


def _break_weights(folder: Path) -> None:
    config = json.loads((folder / "unet" / "config.json").read_text())
    (folder / "unet" / "config.json").write_text(json.dumps({**config, "block_out_channels": [8, 8]}))


def _pickle_weights(folder: Path) -> None:
    diffusers.UNet2DModel.from_pretrained(folder / "unet").save_pretrained(folder / "unet", safe_serialization=False)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()


def _scheduler(folder: Path, **changes: Any) -> None:
    path = folder / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize(
    "spoil,error,named",
    [
        (lambda f: _scheduler(f, _class_name="PNDMScheduler"), UnsupportedPipeline, "PNDMScheduler"),
        (lambda f: _scheduler(f, thresholding=True), UnsupportedPipeline, "thresholding=True"),
        (lambda f: _scheduler(f, timestep_type="karras"), UnsupportedPipeline, "timestep_type"),
        (lambda f: _scheduler(f, beta_schedule="sigmoid"), UnsupportedPipeline, "beta_schedule='sigmoid'"),
        (_break_weights, InvalidArgument, "weights do not fit unet/config.json"),
        (_pickle_weights, InvalidArgument, "never pickles"),
        (lambda f: (f / "model_index.json").unlink(), InvalidArgument, "model_index.json is missing"),
    ],
)
def test_bad_folders_are_refused_and_nothing_is_written(hub: Any, save_pipeline: Any, spoil: Any, error: type, named: str) -> None:
    folder = save_pipeline("ddim")
    spoil(folder)
    with pytest.raises(error, match=named.replace("(", r"\(").replace("[", r"\[")):
        import_pipeline(hub, folder, "broken")
    assert hub.registry.list_models()[0] == [] and list(hub.artifacts.digests()) == []


def test_unsupported_pipeline_names_the_classes(hub: Any, tmp_path: Path) -> None:
    """A real LDMPipeline folder (VQModel + UNet2DModel + DDIMScheduler): the error names the pipeline and the component."""
    unet = diffusers.UNet2DModel(sample_size=4, in_channels=3, out_channels=3, block_out_channels=(4, 8), layers_per_block=1,
                                 norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"))
    vqvae = diffusers.VQModel(block_out_channels=(4,), norm_num_groups=4, latent_channels=3, num_vq_embeddings=8)
    diffusers.LDMPipeline(vqvae=vqvae, unet=unet, scheduler=diffusers.DDIMScheduler()).save_pretrained(tmp_path / "ldm")
    with pytest.raises(UnsupportedPipeline, match=r"LDMPipeline with components .*vqvae \(diffusers.VQModel\) is not supported") as caught:
        import_pipeline(hub, tmp_path / "ldm", "ldm")
    assert "diffusers.VQModel" in str(caught.value)
    assert hub.registry.list_models()[0] == []


def test_a_name_taken_by_another_family_is_refused(hub: Any, save_pipeline: Any) -> None:
    hub.registry.ensure_model("taken", "ddpm", "ddpm")
    with pytest.raises(AlreadyExists, match="taken"):
        import_pipeline(hub, save_pipeline("ddim"), "taken")


def test_generates_through_the_grpc_server_as_in_process(hub: Any, save_pipeline: Any) -> None:
    version = import_pipeline(hub, save_pipeline("ddpm", num_train_timesteps=20), "tiny-ddpm")
    server = BackgroundServer(hub, "127.0.0.1:0")
    try:
        with server.client(timeout=120) as client:
            remote = client.generate("tiny-ddpm", num_samples=2, seed=5, steps=6, format="tensor")
            ddim = client.generate("tiny-ddpm", num_samples=1, seed=5, steps=3, sampler="ddim", format="tensor")
    finally:
        server.stop(grace_s=1.0)
    assert remote.model == version.ref and remote.samples.shape == (2, 3, 8, 8)
    expected = hub.generate("tiny-ddpm", SampleRequest.from_seed(5, 2, steps=6), log=False).samples
    torch.testing.assert_close(remote.samples, expected, atol=1e-5, rtol=0)
    assert ddim.samples.shape == (1, 3, 8, 8)


def test_cli_imports_shows_the_source_and_generates(tmp_path: Path, save_pipeline: Any, cli: Any) -> None:
    home, folder, grid = tmp_path / "cli-home", save_pipeline("ddim"), tmp_path / "grid.png"
    code, out, _ = cli(home, "import", "diffusers", str(folder), "--name", "tiny-ddim")
    assert code == 0 and "registered tiny-ddim:1" in out
    code, shown, _ = cli(home, "models", "show", "tiny-ddim")
    assert "family=diffusers" in shown and f'"source": "{folder.resolve()}"' in shown.replace("\n", "")
    code, out, err = cli(home, "generate", "tiny-ddim", "-n", "2", "--steps", "5", "-o", str(grid))
    assert code == 0, err
    assert np.asarray(Image.open(grid)).std() > 5  # a picture, not a blank
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({"_class_name": "EulerDiscreteScheduler"}))
    code, _, err = cli(home, "import", "diffusers", str(folder), "--name", "other")
    assert code == 1 and "Traceback" not in err and "EulerDiscreteScheduler" in err
