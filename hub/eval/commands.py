"""Command-line entry points: `genhub eval`, `genhub card` and `genhub route` (added to the CLI by hub.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

out = Console()
err = Console(stderr=True)


def _hub(obj: Any) -> Any:
    return obj.hub  # hub.cli.HubContext, opened lazily


def bundled_refs(hub: Any) -> list[str]:
    """The latest version of every model tagged "pretrained" (the bundled checkpoints), by name."""
    refs, token = [], ""
    while True:
        models, token = hub.registry.list_models(page_size=1000, page_token=token)
        for model in models:
            if model.latest_version is not None:
                version = hub.registry.resolve(model.name)
                if "pretrained" in version.tags:
                    refs.append(version.ref)
        if not token:
            return refs


@click.command("eval")
@click.argument("refs", nargs=-1)
@click.option("--pretrained", is_flag=True, help="Also evaluate every bundled model (tagged 'pretrained').")
@click.option("-n", "--num-samples", type=click.IntRange(4),
              help="Samples for quality figures (default: 2500 points; images: as many as the test split, like the floor).")
@click.option("--sampler", help="Sampler (diffusion models); default: the model's.")
@click.option("--steps", type=click.IntRange(1), help="Sampling steps; default: the model's.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--repeats", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Independent sample sets (seeds SEED, SEED+1, ...): quality figures are their mean, with a 95% interval.")
@click.option("--no-quality", is_flag=True, help="Skip the quality figures.")
@click.option("--no-floor", is_flag=True, help="Skip the held-out real data floor.")
@click.option("--no-speed", is_flag=True, help="Skip latency and images/s.")
@click.option("--max-batch", type=click.IntRange(1), default=64, show_default=True, help="The largest batch timed.")
@click.option("--speed-budget", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Seconds of timing per batch size (at least 3 calls after a warm-up).")
@click.pass_obj
def eval_command(obj: Any, refs: tuple[str, ...], pretrained: bool, num_samples: int | None, sampler: str | None,
                 steps: int | None, seed: int, repeats: int, no_quality: bool, no_floor: bool, no_speed: bool,
                 max_batch: int, speed_budget: float) -> None:
    """Measure quality and speed of REFs and record the figures in the registry.

    Points (2D mixtures): modes covered, high-quality share, mode KL. Images: Fréchet distance, precision and
    recall against held-out data, in a shipped classifier's features and in random features (and class
    agreement for conditional models), and a memorisation check. Plus the floor (real data at the same N) and
    p50/p99 latency and images/s at batch 1 and at --max-batch.
    """
    from hub.eval.evaluate import EvalOptions

    hub = _hub(obj)
    targets = list(dict.fromkeys([*refs, *(bundled_refs(hub) if pretrained else [])]))
    if not targets:
        raise click.UsageError("name at least one REF (name, name:version or name@alias), or give --pretrained")
    options = EvalOptions(num_samples=num_samples, sampler=sampler, steps=steps, seed=seed, repeats=repeats,
                          quality=not no_quality, floor=not no_floor, speed=not no_speed, max_batch=max_batch,
                          speed_budget_s=speed_budget)
    for ref in targets:
        with err.status(f"evaluating {ref}"):
            records = hub.evaluate(ref, options)
        table = Table("metric", "value", "data", "samples", "sampler", "steps", title=records[0].ref if records else ref)
        for m in records:
            table.add_row(m.name, f"{m.value:.4g}", m.data, str(m.num_samples or ""), m.sampler or "", str(m.steps or ""))
        out.print(table)
        if records:
            out.print(f"recorded {len(records)} figures for {records[0].ref} on {records[0].hardware}")


@click.command()
@click.argument("ref")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the card here, with a sample grid "
              "PNG beside it (same name, .png); without it, print the markdown.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Seed of the sample grid.")
@click.option("-n", "--num-samples", type=click.IntRange(1, 4096), help="Samples in the grid (default: 64 images, 1000 points).")
@click.pass_obj
def card(obj: Any, ref: str, output: str | None, seed: int, num_samples: int | None) -> None:
    """Render REF's model card: figures, training command, lineage, config (and a sample grid with -o)."""
    from hub.cards import render_card, write_card

    hub = _hub(obj)
    if output is None:
        click.echo(render_card(hub, ref))
        return
    path = write_card(hub, ref, Path(output), seed=seed, num_samples=num_samples)
    out.print(f"wrote {path} and {path.with_suffix('.png')}")


@click.command()
@click.argument("dataset")
@click.option("--budget-ms", type=float, required=True, help="Latency budget: p50 at batch 1 on this machine.")
@click.option("--condition", help="A class index or class name the samples must belong to.")
@click.pass_obj
def route(obj: Any, dataset: str, budget_ms: float, condition: str | None) -> None:
    """Pick the best-quality model for DATASET whose measured latency fits the budget."""
    out.print(_hub(obj).route_settings(dataset, budget_ms, condition).describe())
