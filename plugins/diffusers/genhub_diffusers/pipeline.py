"""Reading a diffusers pipeline folder, and its scheduler config in genhub's terms.

A folder written by ``DDPMPipeline.save_pretrained`` / ``DDIMPipeline.save_pretrained``:

    model_index.json                       {"_class_name": "DDIMPipeline", "unet": ["diffusers", "UNet2DModel"], ...}
    unet/config.json                       UNet2DModel's constructor arguments
    unet/diffusion_pytorch_model.safetensors
    scheduler/scheduler_config.json        DDPMScheduler's or DDIMScheduler's arguments

or by ``StableDiffusionPipeline.save_pretrained`` (text-to-image in a VAE's latent space), which adds
``vae/`` (AutoencoderKL), ``text_encoder/`` (transformers' CLIPTextModel: config.json, model.safetensors)
and ``tokenizer/`` (CLIPTokenizer files), with a ``UNet2DConditionModel`` as its unet.

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

SCHEDULERS = ("DDPMScheduler", "DDIMScheduler")
TEXT_TO_IMAGE = "StableDiffusionPipeline"
# pipeline class -> {component: (library, accepted classes)}: exactly these components, nothing else
LAYOUTS: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "DDPMPipeline": {"unet": ("diffusers", ("UNet2DModel",)), "scheduler": ("diffusers", SCHEDULERS)},
    "DDIMPipeline": {"unet": ("diffusers", ("UNet2DModel",)), "scheduler": ("diffusers", SCHEDULERS)},
    TEXT_TO_IMAGE: {
        "unet": ("diffusers", ("UNet2DConditionModel",)), "vae": ("diffusers", ("AutoencoderKL",)),
        "text_encoder": ("transformers", ("CLIPTextModel",)), "tokenizer": ("transformers", ("CLIPTokenizer", "CLIPTokenizerFast")),
        "scheduler": ("diffusers", SCHEDULERS),
    },
}
PIPELINES = tuple(LAYOUTS)
UNETS = ("UNet2DModel", "UNet2DConditionModel")
ABSENT = ("safety_checker", "feature_extractor", "image_encoder")  # optional parts a pipeline may save as [null, null]
FLAGS = ("requires_safety_checker",)  # model_index keys that are settings, not components
WEIGHTS = {"diffusers": "diffusion_pytorch_model.safetensors", "transformers": "model.safetensors"}
# UNet2DConditionModel inputs beyond (sample, timestep, encoder_hidden_states) that genhub does not feed
UNET_EXTRAS = ("class_embed_type", "num_class_embeds", "addition_embed_type", "time_cond_proj_dim", "encoder_hid_dim_type")
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
    """What an import reads from a folder: each component's config and weights file, and the tokenizer's files."""

    path: Path
    model_index: dict[str, Any]
    configs: dict[str, dict[str, Any]]  # component -> its config (scheduler included; a tokenizer's tokenizer_config.json)
    weights: dict[str, Path]  # component -> its safetensors file
    files: dict[str, Path] = field(default_factory=dict)  # tokenizer files, kept byte for byte: name -> path
    file_digests: dict[str, str] = field(default_factory=dict)  # relative path -> sha256, recorded in the card

    @property
    def pipeline_class(self) -> str:
        return str(self.model_index["_class_name"])

    @property
    def unet(self) -> dict[str, Any]:
        return self.configs["unet"]

    @property
    def scheduler(self) -> dict[str, Any]:
        return self.configs["scheduler"]


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


def check_model_index(model_index: Mapping[str, Any]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The layout of a supported pipeline (``LAYOUTS``); refuse other pipelines and components, naming them."""
    pipeline = model_index.get("_class_name")
    components = {k: v for k, v in model_index.items() if not k.startswith("_") and k not in FLAGS}
    present = {k: v for k, v in components.items() if not (k in ABSENT and v in ([None, None], None))}
    described = ", ".join(f"{k} ({'.'.join(map(str, v)) if isinstance(v, list) else v})" for k, v in sorted(present.items()))
    supported = " / ".join(PIPELINES)
    if pipeline not in LAYOUTS:
        raise UnsupportedPipeline(f"{pipeline} with components {described or 'none'} is not supported; genhub-diffusers "
                                  f"imports {supported} folders")
    wanted = LAYOUTS[pipeline]
    odd = sorted(k for k, v in present.items() if k not in wanted or not isinstance(v, list) or len(v) != 2
                 or v[0] != wanted[k][0] or v[1] not in wanted[k][1])
    if "safety_checker" in present:
        raise UnsupportedPipeline(
            f"{pipeline} has a safety_checker ({'.'.join(map(str, present['safety_checker']))}), which genhub does not run; "
            "to import it without one, re-save it with safety_checker=None, feature_extractor=None, requires_safety_checker=False"
        )
    if odd or set(present) != set(wanted):
        needed = ", ".join(f"{k} ({lib}.{' or '.join(classes)})" for k, (lib, classes) in wanted.items())
        raise UnsupportedPipeline(
            f"{pipeline} with components {described or 'none'} is not supported"
            + (f" (unsupported: {', '.join(odd)})" if odd else f" (missing: {', '.join(sorted(set(wanted) - set(present)))})")
            + f"; genhub-diffusers imports {supported} folders; a {pipeline} has {needed}"
        )
    return wanted


def check_unet(config: Mapping[str, Any]) -> tuple[int, int, int]:
    """The sample shape [C, H, W] of a UNet config (latents for a UNet2DConditionModel); refuse other classes and
    layouts genhub cannot sample: a learned variance, or inputs other than labels (UNet2DModel) or text (conditional)."""
    cls = config.get("_class_name", "UNet2DModel")
    if cls not in UNETS:
        raise UnsupportedPipeline(f"unet is a {cls}; genhub-diffusers runs only {', '.join(UNETS)}")
    extras = UNET_EXTRAS if cls == "UNet2DConditionModel" else ("class_embed_type",)  # UNet2DModel: num_class_embeds labels
    for key in extras:
        if config.get(key) is not None:
            raise UnsupportedPipeline(f"{cls} {key}={config[key]!r} is not supported: genhub feeds "
                                      f"{'only the text encoder' if cls != 'UNet2DModel' else 'only num_class_embeds labels'}"
                                      f" to the network; leave {key} unset (null)")
    channels = int(config.get("in_channels", 3))
    if int(config.get("out_channels", 3)) != channels:
        raise UnsupportedPipeline(
            f"{cls} has in_channels={channels} but out_channels={config.get('out_channels')}: a learned variance "
            "output is not supported; genhub's samplers need a prediction shaped like the sample"
        )
    size = config.get("sample_size")
    h, w = (size, size) if isinstance(size, int) else tuple(size or ())  # type: ignore[misc]
    if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 and channels > 0):
        raise InvalidArgument("unet", f"sample_size {size!r} and in_channels {channels} do not give an image shape")
    return channels, h, w


def check_vae(config: Mapping[str, Any], latent_channels: int) -> int:
    """The VAE's downscaling factor (as StableDiffusionPipeline computes it); its latents must be the UNet's samples."""
    if config.get("_class_name", "AutoencoderKL") != "AutoencoderKL":
        raise UnsupportedPipeline(f"vae is a {config.get('_class_name')}; genhub-diffusers decodes with an AutoencoderKL")
    if int(config.get("latent_channels", 4)) != latent_channels:
        raise UnsupportedPipeline(f"vae latent_channels={config.get('latent_channels')} but the unet takes {latent_channels} "
                                  "channels: the two do not belong together")
    if config.get("shift_factor") is not None:
        raise UnsupportedPipeline(f"vae shift_factor={config['shift_factor']!r} is not supported (StableDiffusionPipeline "
                                  "ignores it; a pipeline that needs it is not a StableDiffusionPipeline)")
    return 2 ** (len(config.get("block_out_channels", (64,))) - 1)


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
    layout = check_model_index(model_index)
    configs, weights, files, listed = {}, {}, {}, [root / "model_index.json"]
    for name, (library, _) in layout.items():
        config_name = {"scheduler": "scheduler_config.json", "tokenizer": "tokenizer_config.json"}.get(name, "config.json")
        configs[name] = _read_json(root / name / config_name, f"{name}/{config_name}")
        listed.append(root / name / config_name)
        if name == "tokenizer":  # every file, as the tokenizer reads them (vocab.json and merges.txt, or tokenizer.json)
            files = {p.name: p for p in sorted((root / name).iterdir()) if p.is_file() and p.name != config_name}
            big = [p.name for p in files.values() if p.stat().st_size > MAX_TOKENIZER_FILE]
            if big:
                raise InvalidArgument("path", f"tokenizer files {big} are over {MAX_TOKENIZER_FILE >> 20} MiB; a CLIP tokenizer's are a few MB")
            listed += files.values()
        elif name != "scheduler":
            weights[name] = _weights(root / name, WEIGHTS[library])
            listed.append(weights[name])
    latent_channels = check_unet(configs["unet"])[0]
    if "vae" in configs:
        check_vae(configs["vae"], latent_channels)
    make_process(configs["scheduler"])  # checks the keys and builds the schedule once, so a bad one fails before any copy
    digests = {str(p.relative_to(root)): _sha256(p) for p in listed}
    return PipelineFolder(root, model_index, configs, weights, files, digests)


MAX_TOKENIZER_FILE = 64 << 20  # CLIP's tokenizer.json is about 2 MB


def _weights(folder: Path, name: str) -> Path:
    """The unsharded safetensors file of one component, or an error that says how to write one."""
    weights = folder / name
    if not weights.is_file():
        found = sorted(p.name for p in folder.iterdir())
        raise InvalidArgument(
            "path",
            f"{weights} is missing ({folder.name}/ holds {found}); genhub reads only unsharded safetensors, never pickles: "
            f"re-save that component with .from_pretrained(...).save_pretrained(folder, safe_serialization=True)",
        )
    return weights
