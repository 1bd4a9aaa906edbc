"""``genhub import diffusers``: a pipeline folder in, a registry version out.

Everything is read and checked (configs, schedule, weights loaded into the
network) before anything is written; then the weights go into the
content-addressed store (an atomic write) and the version, its card and the
``latest`` alias into the registry in one transaction. A failure at any point
leaves the registry as it was.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from hub.errors import InvalidArgument

from genhub_diffusers.family import DiffusersConfig, DiffusersFamily
from genhub_diffusers.pipeline import PipelineFolder, check_unet, read_pipeline

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.registry import VersionRecord

FAMILY = DiffusersFamily.name
DATASET = "external"  # the data it was trained on is not known to genhub


def import_pipeline(
    hub: Hub, path: Path | str, name: str, *, dataset: str = DATASET, tags: Iterable[str] = ()
) -> VersionRecord:
    """Register the pipeline folder ``path`` as a new version of model ``name`` (family "diffusers")."""
    folder = read_pipeline(path)
    config = DiffusersConfig.for_pipeline(folder)
    tensors: dict[str, torch.Tensor] = {}
    for component, weights in folder.weights.items():
        try:
            tensors.update({f"{component}.{k}": v for k, v in load_file(weights).items()})
        except (SafetensorError, OSError, ValueError) as exc:
            raise InvalidArgument("path", f"{weights} is not a readable safetensors file ({exc})") from None
    if folder.files:
        from genhub_diffusers.latent import file_tensors

        tensors.update(file_tensors(folder.files))
    _, model = hub.build(FAMILY, config.to_dict())  # the family must be installed, and the weights must fit
    model.load_state_dict(tensors)
    digest = hub.artifacts.put(tensors, metadata={"family": FAMILY, "config": config.to_json(), "source": str(folder.path)})
    plugin = hub.parts.owners.get(("model family", FAMILY), "")
    hub.registry.ensure_model(name, FAMILY, plugin, description=f"{folder.pipeline_class} imported from {folder.path}")
    return hub.registry.add_version(
        name, config=config.to_dict(), artifact_digest=digest, dataset=dataset,
        tags=["imported", "diffusers", *tags], card=card(folder, config),
    )


def card(folder: PipelineFolder, config: DiffusersConfig) -> str:
    """The version's model card: where the weights came from, byte for byte, and how genhub samples them."""
    sched = folder.scheduler
    lines = [
        f"# {folder.pipeline_class} imported from diffusers",
        "",
        f"Source: `{folder.path}` (written by diffusers {folder.model_index.get('_diffusers_version', 'unknown')}), "
        f"imported {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.",
        "",
        "| file | sha256 |",
        "|---|---|",
        *(f"| `{name}` | `{digest}` |" for name, digest in folder.file_digests.items()),
        "",
        f"Network: diffusers `{config.unet.get('_class_name', 'UNet2DModel')}`, sample shape {list(check_unet(config.unet))}"
        + (f" (latents of an `AutoencoderKL`; text: transformers `CLIPTextModel`, prompts of at most "
           f"{config.tokenizer.get('model_max_length', '?')} tokens, guidance {config.default_guidance} by default)"
           if config.text_to_image else "") + ". "
        f"Scheduler: `{sched.get('_class_name')}`, {sched.get('num_train_timesteps', 1000)} steps, "
        f"`{sched.get('beta_schedule', 'linear')}` betas, predicts `{sched.get('prediction_type', 'epsilon')}`, "
        f"`{sched.get('timestep_spacing', 'leading')}` spacing.",
        f"Sampled by genhub's `{config.default_sampler}` sampler ({config.default_steps} steps by default) with the "
        "pipeline's own semantics: from the same initial noise, the same images as the diffusers pipeline.",
    ]
    return "\n".join(lines) + "\n"
