"""Reading a diffusers pipeline folder, and its scheduler config in genhub's terms.

A folder written by ``DDPMPipeline.save_pretrained`` / ``DDIMPipeline.save_pretrained``:

    model_index.json                       {"_class_name": "DDIMPipeline", "unet": ["diffusers", "UNet2DModel"], ...}
    unet/config.json                       UNet2DModel's constructor arguments
    unet/diffusion_pytorch_model.safetensors
    scheduler/scheduler_config.json        DDPMScheduler's or DDIMScheduler's arguments

Only JSON and safetensors are read: nothing here imports diffusers or unpickles.
Anything genhub would not sample exactly as diffusers does is refused with an
error that names the class or key, never approximated.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from hub.errors import InvalidArgument
from hub.sampling import PREDICTION_TYPES, TIMESTEP_SPACINGS, DiffusionProcess

PIPELINES = ("DDPMPipeline", "DDIMPipeline")
UNETS = ("UNet2DModel",)
SCHEDULERS = ("DDPMScheduler", "DDIMScheduler")
WEIGHTS = "diffusion_pytorch_model.safetensors"
# Every key of DDPMScheduler / DDIMScheduler (diffusers 0.30-0.42); an unknown key could change the sampling.
SCHEDULER_KEYS = (
    "num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "variance_type", "clip_sample",
    "prediction_type", "thresholding", "dynamic_thresholding_ratio", "clip_sample_range", "sample_max_value",
    "timestep_spacing", "steps_offset", "rescale_betas_zero_snr", "set_alpha_to_one",
)
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


class UnsupportedPipeline(InvalidArgument):
    """A pipeline folder genhub cannot serve faithfully; the message names the class or key."""

    def __init__(self, message: str) -> None:
        super().__init__("pipeline", message)


@dataclass
class PipelineFolder:
    """What an import reads from a folder: the three configs and the UNet's weights file."""

    path: Path
    model_index: dict[str, Any]
    unet: dict[str, Any]
    scheduler: dict[str, Any]
    weights: Path
    file_digests: dict[str, str] = field(default_factory=dict)  # relative path -> sha256, recorded in the card

    @property
    def pipeline_class(self) -> str:
        return str(self.model_index["_class_name"])


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidArgument("path", f"{path} is missing: a diffusers pipeline folder has {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgument("path", f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidArgument("path", f"{path} holds a {type(data).__name__}, not a JSON object")
    return data


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_model_index(model_index: Mapping[str, Any]) -> None:
    """Refuse pipelines and components other than an unconditional UNet2DModel with a DDPM/DDIM scheduler."""
    pipeline = model_index.get("_class_name")
    components = {k: v for k, v in model_index.items() if not k.startswith("_")}
    described = ", ".join(f"{k} ({'.'.join(map(str, v)) if isinstance(v, list) else v})" for k, v in sorted(components.items()))
    wanted = {"unet": UNETS, "scheduler": SCHEDULERS}
    odd = sorted(k for k, v in components.items() if k not in wanted or not isinstance(v, list) or len(v) != 2
                 or v[0] != "diffusers" or v[1] not in wanted[k])
    if pipeline not in PIPELINES or odd or set(components) != set(wanted):
        raise UnsupportedPipeline(
            f"{pipeline} with components {described or 'none'} is not supported"
            + (f" (unsupported: {', '.join(odd)})" if odd else "")
            + f"; genhub-diffusers imports {' and '.join(PIPELINES)} folders: a diffusers UNet2DModel and a "
            f"{' or '.join(SCHEDULERS)}"
        )


def check_unet(config: Mapping[str, Any]) -> tuple[int, int, int]:
    """The sample shape [C, H, W] of a UNet2DModel config; refuse other classes and layouts genhub cannot sample."""
    cls = config.get("_class_name", "UNet2DModel")
    if cls not in UNETS:
        raise UnsupportedPipeline(f"unet is a {cls}; genhub-diffusers runs only {', '.join(UNETS)}")
    channels = int(config.get("in_channels", 3))
    if int(config.get("out_channels", 3)) != channels:
        raise UnsupportedPipeline(
            f"UNet2DModel has in_channels={channels} but out_channels={config.get('out_channels')}: a learned variance "
            "output is not supported; genhub's samplers need a prediction shaped like the sample"
        )
    size = config.get("sample_size")
    h, w = (size, size) if isinstance(size, int) else tuple(size or ())  # type: ignore[misc]
    if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 and channels > 0):
        raise InvalidArgument("unet", f"sample_size {size!r} and in_channels {channels} do not give an image shape")
    return channels, h, w


def check_scheduler(config: Mapping[str, Any]) -> None:
    """Refuse scheduler classes, keys and values genhub's samplers do not reproduce."""
    cls = config.get("_class_name")
    if cls not in SCHEDULERS:
        raise UnsupportedPipeline(f"scheduler is a {cls}; genhub-diffusers samples with {' or '.join(SCHEDULERS)} configs")
    unknown = sorted(k for k in config if not k.startswith("_") and k not in SCHEDULER_KEYS)
    if unknown:
        raise UnsupportedPipeline(f"{cls} config keys {unknown} are unknown to genhub-diffusers; it knows {list(SCHEDULER_KEYS)}")
    refused = {
        "thresholding": (config.get("thresholding", False), False),
        "rescale_betas_zero_snr": (config.get("rescale_betas_zero_snr", False), False),
        "variance_type": (config.get("variance_type", "fixed_small"), "fixed_small"),
    }
    for key, (value, supported) in refused.items():
        if value != supported:
            raise UnsupportedPipeline(f"{cls} {key}={value!r} is not supported; genhub's samplers implement {key}={supported!r}")
    checks = {
        "beta_schedule": (config.get("beta_schedule", "linear"), BETA_SCHEDULES),
        "prediction_type": (config.get("prediction_type", "epsilon"), PREDICTION_TYPES),
        "timestep_spacing": (config.get("timestep_spacing", "leading"), TIMESTEP_SPACINGS),
    }
    for key, (value, allowed) in checks.items():
        if value not in allowed and not (key == "beta_schedule" and config.get("trained_betas") is not None):
            raise UnsupportedPipeline(f"{cls} {key}={value!r} is not supported; use one of {list(allowed)}")


def betas(config: Mapping[str, Any]) -> torch.Tensor:
    """[T] float32 betas, computed as diffusers' DDPM/DDIM schedulers compute them."""
    T = int(config.get("num_train_timesteps", 1000))
    if T < 1:
        raise InvalidArgument("num_train_timesteps", f"must be >= 1, got {T}")
    if config.get("trained_betas") is not None:
        trained = torch.tensor(config["trained_betas"], dtype=torch.float32)
        if trained.shape != (T,):
            raise InvalidArgument("trained_betas", f"has shape {list(trained.shape)}; need [{T}] (num_train_timesteps)")
        return trained
    start, end = float(config.get("beta_start", 1e-4)), float(config.get("beta_end", 0.02))
    schedule = config.get("beta_schedule", "linear")
    if schedule == "linear":
        return torch.linspace(start, end, T, dtype=torch.float32)
    if schedule == "scaled_linear":
        return torch.linspace(start**0.5, end**0.5, T, dtype=torch.float32) ** 2
    # squaredcos_cap_v2 (check_scheduler refused the rest): diffusers' betas_for_alpha_bar, cosine, max beta 0.999
    def abar(s: float) -> float:
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    return torch.tensor([min(1 - abar((i + 1) / T) / abar(i / T), 0.999) for i in range(T)], dtype=torch.float32)


def make_process(config: Mapping[str, Any]) -> DiffusionProcess:
    """The ``DiffusionProcess`` that makes genhub's ddpm/ddim samplers step as this scheduler config does.

    The table is diffusers' own float32 cumprod (widened to float64), so the two agree to rounding.
    ``use_clipped_model_output=False`` is what DDIMPipeline passes: epsilon is never re-derived from the clipped x0.
    """
    check_scheduler(config)
    abar = torch.cumprod(1.0 - betas(config), dim=0)
    clip = float(config.get("clip_sample_range", 1.0)) if config.get("clip_sample", True) else None
    return DiffusionProcess(
        abar.to(torch.float64),
        prediction_type=config.get("prediction_type", "epsilon"),
        clip_sample=clip,
        timestep_spacing=config.get("timestep_spacing", "leading"),
        steps_offset=int(config.get("steps_offset", 0)),
        final_alpha_cumprod=1.0 if config.get("set_alpha_to_one", True) else float(abar[0]),
        use_clipped_model_output=False,
    )


def read_pipeline(path: Path | str) -> PipelineFolder:
    """Read and check a pipeline folder; every refusal names the file, class or key."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise InvalidArgument("path", f"{root} is not a folder; give the folder save_pretrained wrote (it holds model_index.json)")
    model_index = _read_json(root / "model_index.json", "model_index.json")
    check_model_index(model_index)
    unet = _read_json(root / "unet" / "config.json", "unet/config.json")
    check_unet(unet)
    scheduler = _read_json(root / "scheduler" / "scheduler_config.json", "scheduler/scheduler_config.json")
    make_process(scheduler)  # checks the keys and builds the schedule once, so a bad one fails before any copy
    weights = root / "unet" / WEIGHTS
    if not weights.is_file():
        found = sorted(p.name for p in (root / "unet").iterdir())
        raise InvalidArgument(
            "path",
            f"{weights} is missing (unet/ holds {found}); genhub reads only unsharded safetensors, never pickles: "
            "re-save with UNet2DModel.from_pretrained(...).save_pretrained(folder, safe_serialization=True)",
        )
    files = ["model_index.json", "unet/config.json", "scheduler/scheduler_config.json", f"unet/{WEIGHTS}"]
    return PipelineFolder(root, model_index, unet, scheduler, weights, {f: _sha256(root / f) for f in files})
