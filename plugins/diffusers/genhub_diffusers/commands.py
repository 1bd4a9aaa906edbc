"""The ``genhub import diffusers`` subcommand this plugin adds to the CLI."""

from __future__ import annotations

import click

from hub.cli import HubContext, out, pass_hub

from genhub_diffusers.importer import DATASET, import_pipeline


@click.command("diffusers")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--name", "model_name", required=True, help="Registry model name; an existing one gets a new version.")
@click.option("--dataset", default=DATASET, show_default=True, help="What the pipeline was trained on, if known.")
@click.option("--tag", "tags", multiple=True, help="Extra version tag (repeatable).")
@pass_hub
def import_diffusers(ctx: HubContext, path: str, model_name: str, dataset: str, tags: tuple[str, ...]) -> None:
    """Import a diffusers DDPMPipeline, DDIMPipeline or StableDiffusionPipeline folder (save_pretrained output) as a new version of NAME."""
    version = import_pipeline(ctx.hub, path, model_name, dataset=dataset, tags=tags)
    out.print(f"registered {version.model}:{version.version} (sha256:{version.artifact_digest[:12]}) from {version.config['source']}")
