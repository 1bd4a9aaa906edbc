"""Model cards, and exporting a registered version as a checkpoint a plugin can ship."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.eval.summary import card_section

if TYPE_CHECKING:
    from hub.core import Hub

GRID_SAMPLES = 64  # images in a card's sample grid (points: hub.images.POINT_SAMPLES in a scatter plot)


def render_card(hub: Hub, ref: str, sample_grid: str | None = None) -> str:
    """Markdown: what the model is, how it was trained (the exact command), its figures and lineage.

    ``sample_grid``: a PNG path (relative to the card) shown under "Samples"; see ``write_card``.
    """
    reg = hub.registry
    version = reg.resolve(ref)
    lines = [
        f"# {version.model}:{version.version}",
        "",
        f"A `{version.family}` model trained on `{version.dataset}`.",
        "",
        f"- weights: `sha256:{version.artifact_digest}` (safetensors)",
        f"- created: {version.created_at}",
    ]
    if version.tags:
        lines.append(f"- tags: {', '.join(version.tags)}")
    chain = reg.lineage(ref)
    if len(chain) > 1:
        lines.append("- lineage: " + " <- ".join(f"{v.model}:{v.version}" for v in chain))
    for run in reg.training_runs(ref):
        lines += [
            "",
            "## Training",
            "",
            "```",
            run.command,
            "```",
            "",
            _run_line(run),
        ]
        if run.losses:
            lines.append(f"- final loss {run.losses[-1]:.4f} (first logged {run.losses[0]:.4f})")
    metrics = reg.metrics(ref)
    lines += card_section(metrics)
    if sample_grid is not None:
        lines += ["", "## Samples", "", f"![samples of {version.model}:{version.version}]({sample_grid})"]
    if metrics:
        lines += ["", "## Metrics", "", "| metric | value | data | samples | sampler | steps | hardware |", "|---|---|---|---|---|---|---|"]
        for m in metrics:
            lines.append(
                f"| {m.name} | {m.value:.4g} | {m.data or ''} | {m.num_samples or ''} | {m.sampler or ''} | {m.steps or ''} | {m.hardware or ''} |"
            )
    lines += ["", "## Config", "", "```json", json.dumps(version.config, indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)


def _run_line(run: Any) -> str:
    """Seed, steps, time and hardware of a training run; fields the run did not record are left out."""
    parts = [f"seed {run.seed}" if run.seed is not None else None,
             f"{run.steps} steps" if run.steps is not None else None,
             f"{run.wall_time_s:.0f} s" if run.wall_time_s is not None else None]
    line = ", ".join(p for p in parts if p) or "no run figures recorded"
    return f"- {line}" + (f" on {run.hardware}" if run.hardware else "")


def export_checkpoint(hub: Hub, ref: str, directory: Path) -> Path:
    """Write ``model.safetensors``, ``card.json``, ``card.md`` and its sample picture ``card.png`` into ``directory``."""
    reg = hub.registry
    version = reg.resolve(ref)
    directory.mkdir(parents=True, exist_ok=True)
    hub.artifacts.get(version.artifact_digest)  # verifies the digest; raises ArtifactCorrupt
    shutil.copyfile(hub.artifacts.path(version.artifact_digest), directory / "model.safetensors")
    runs = reg.training_runs(ref)
    training: dict[str, Any] = {}
    if runs:
        run = runs[-1]
        training = {
            "command": run.command,
            "seed": run.seed,
            "steps": run.steps,
            "wall_time_s": run.wall_time_s,
            "losses": run.losses,
            "hardware": run.hardware,
        }
    meta = {
        "name": version.model,
        "family": version.family,
        "dataset": version.dataset,
        "config": version.config,
        "digest": version.artifact_digest,
        "training": training,
        # every figure with how and where it was measured, so a fresh install shows (and can route on) them
        "metrics": [
            {"name": m.name, "value": m.value, "data": m.data, "num_samples": m.num_samples, "hardware": m.hardware,
             "sampler": m.sampler, "steps": m.steps, "details": m.details}
            for m in reg.metrics(ref)
        ],
        "tags": [t for t in version.tags if t != "pretrained"],
    }
    if version.parent:
        meta["parent"] = version.parent  # a bundled parent (teacher, autoencoder) is synced first
    (directory / "card.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    write_card(hub, version.ref, directory / "card.md")  # and card.png: what the model draws, seed 0
    return directory


def write_card(hub: Hub, ref: str, path: Path, *, seed: int = 0, num_samples: int | None = None) -> Path:
    """Write the card to ``path`` and a sample grid PNG beside it (``<stem>.png``), linked from the card."""
    from hub.images import POINT_SAMPLES, save_samples
    from hub.model import SampleRequest

    version = hub.resolve(ref)
    loaded = hub.load(version.ref)
    n = num_samples or (POINT_SAMPLES if loaded.model.output_kind == "points" else GRID_SAMPLES)
    classes = loaded.model.capabilities.num_classes
    labels = [i % classes for i in range(n)] if classes else None  # one row per class, as far as the grid goes
    samples = hub.generate(version.ref, SampleRequest.from_seed(seed, n, class_labels=labels), log=False).samples
    path = Path(path)
    grid = save_samples(samples, path.with_suffix(".png"), mixture=hub.mixture(version.dataset))
    path.write_text(render_card(hub, version.ref, sample_grid=grid.name))
    return path
