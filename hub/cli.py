"""The ``genhub`` command line. Errors print one line, never a traceback."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub import request_fields
from hub.core import Hub
from hub.errors import GenhubError, InvalidArgument
from hub.model import StepEvent, TrainOptions, TrainProgress
from hub.plugins import Contributions, PluginHost, load_plugins
from hub.server.options import connection_options

console = Console(stderr=True)
out = Console()


class HubContext:
    """Opened lazily so that `genhub --help` needs no registry."""

    def __init__(self, db: str | None, home: str | None, plugins: tuple[PluginHost, Contributions],
                 bundled: bool = True) -> None:
        self.db, self.home, self.plugins, self.bundled = db, home, plugins, bundled
        self._hub: Hub | None = None

    @property
    def hub(self) -> Hub:
        if self._hub is None:
            self._hub = Hub.open(db_url=self.db, home=self.home, plugins=self.plugins, sync=self.bundled)
        return self._hub


pass_hub = click.make_pass_decorator(HubContext)


@click.group()
@click.option("--db", envvar="GENHUB_DB", help="Registry SQLAlchemy URL (default: sqlite in the genhub home).")
@click.option("--home", envvar="GENHUB_HOME", type=click.Path(file_okay=False), help="genhub data folder.")
@click.option("--no-bundled", is_flag=True, envvar="GENHUB_NO_BUNDLED",
              help="Do not import the plugins' bundled checkpoints into this home (to train their replacements: "
                   "new versions then start at :1, as they will on a fresh install).")
@click.version_option(package_name="genhub")
@click.pass_context
def cli(ctx: click.Context, db: str | None, home: str | None, no_bundled: bool) -> None:
    """genhub: a registry and serving hub for generative image models."""
    ctx.obj = HubContext(db, home, ctx.obj if isinstance(ctx.obj, tuple) else load_plugins(), bundled=not no_bundled)
    ctx.call_on_close(lambda: ctx.obj._hub.close() if ctx.obj._hub else None)


@cli.command()
@pass_hub
def plugins(ctx: HubContext) -> None:
    """List plugins, with the error of any that failed to load."""
    table = Table("plugin", "version", "status", "error")
    for info in ctx.hub.plugins():
        style = "red" if info.status == "failed" else None
        table.add_row(info.name, info.version or "", info.status, info.error or "", style=style)
    out.print(table)


@cli.group()
def plugin() -> None:
    """Write a new plugin package (`genhub plugin new NAME`)."""


@plugin.command("new")
@click.argument("name")
@click.option("--dir", "parent", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Folder to write genhub-NAME into.")
def plugin_new(name: str, parent: str) -> None:
    """Write genhub-NAME: pyproject with the entry point, a family, a bundled checkpoint and a test."""
    from hub.scaffold import new_plugin

    root = new_plugin(name, Path(parent))
    out.print(f"wrote {root}; next: pip install -e {root} && pytest {root / 'tests'}")


@cli.command()
@pass_hub
def datasets(ctx: HubContext) -> None:
    """List the datasets plugins provide."""
    table = Table("dataset", "kind", "description")
    for spec in sorted(ctx.hub.parts.datasets.values(), key=lambda s: s.name):
        table.add_row(spec.name, spec.kind, spec.description)
    out.print(table)


@cli.command()
@pass_hub
def families(ctx: HubContext) -> None:
    """List model families and samplers."""
    table = Table("family", "plugin", "description")
    for name, family in sorted(ctx.hub.parts.families.items()):
        table.add_row(name, ctx.hub.parts.owners.get(("model family", name), ""), family.description)
    out.print(table)
    out.print("samplers: " + ", ".join(ctx.hub.parts.samplers.names()))
    out.print("text encoders: " + (", ".join(ctx.hub.parts.text_encoders.names()) or "-"))


@cli.group(invoke_without_command=True)
@click.pass_context
def models(ctx: click.Context) -> None:
    """List models (or `models show REF`)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(models_list)


@models.command("list")
@pass_hub
def models_list(ctx: HubContext) -> None:
    """List registered models with their latest version."""
    table = Table("model", "family", "versions", "latest", "dataset", "aliases")
    token = ""
    while True:
        records, token = ctx.hub.registry.list_models(page_size=100, page_token=token)
        for m in records:
            versions = ctx.hub.registry.list_versions(m.name)
            latest = versions[-1] if versions else None
            aliases = ", ".join(f"{a}->{v.version}" for v in versions for a in v.aliases)
            table.add_row(m.name, m.family, str(len(versions)), str(latest.version) if latest else "-",
                          latest.dataset if latest else "", aliases)
        if not token:
            break
    out.print(table)


@models.command("show")
@click.argument("ref")
@pass_hub
def models_show(ctx: HubContext, ref: str) -> None:
    """Show a model version: config, training run, metrics, lineage."""
    reg = ctx.hub.registry
    version = reg.resolve(ref)
    out.print(f"[bold]{version.model}:{version.version}[/bold]  family={version.family}  "
              f"dataset={version.dataset}  aliases={', '.join(version.aliases) or '-'}")
    out.print(f"digest  sha256:{version.artifact_digest}")
    out.print(f"created {version.created_at}  tags={', '.join(version.tags) or '-'}")
    out.print("config  " + json.dumps(version.config, sort_keys=True))
    for run in reg.training_runs(ref):
        final = f"{run.losses[-1]:.4f}" if run.losses else "-"
        out.print(f"trained {run.steps} steps, seed {run.seed}, {run.wall_time_s:.0f} s on {run.hardware}; final loss {final}")
        out.print(f"        command: {run.command}")
    metrics = reg.metrics(ref)
    if metrics:
        table = Table("metric", "value", "data", "samples", "sampler", "steps", "hardware")
        for m in metrics:
            table.add_row(m.name, f"{m.value:.4g}", m.data or "", str(m.num_samples or ""), m.sampler or "",
                          str(m.steps or ""), m.hardware or "")
        out.print(table)
    chain = reg.lineage(ref)
    out.print("lineage " + " <- ".join(f"{v.model}:{v.version}" for v in chain))
    out.print("versions " + ", ".join(str(v.version) for v in reg.list_versions(version.model)))


@cli.command()
@click.argument("model")
@click.argument("alias")
@click.argument("version", type=int)
@pass_hub
def alias(ctx: HubContext, model: str, alias: str, version: int) -> None:
    """Point ALIAS of MODEL at VERSION (e.g. `genhub alias ddpm-digits production 2`)."""
    record = ctx.hub.registry.set_alias(model, alias, version)
    out.print(f"{model}@{alias} -> {record.model}:{record.version}")


def _parse_assignments(pairs: tuple[str, ...], option: str) -> dict[str, Any]:
    """KEY=VALUE pairs; VALUE is JSON when it parses (numbers, lists, true), else a string."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidArgument(option, f"expected KEY=VALUE, got {pair!r}")
        try:
            result[key] = json.loads(value)
        except json.JSONDecodeError:
            result[key] = value
    return result


def _progress(transient: bool = False) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), console=console, transient=transient)


@cli.command()
@click.argument("family")
@click.option("--dataset", "-d", required=True, help="Dataset name (see `genhub datasets`).")
@click.option("--name", "model_name", help="Registry model name (default: FAMILY-DATASET).")
@click.option("--steps", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-4, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Config override (repeatable).")
@click.option("--parent", help="Start from this version's weights; recorded as lineage.")
@click.option("--tag", "tags", multiple=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:1 (default: a GPU if there is one).")
@pass_hub
def train(ctx: HubContext, family: str, dataset: str, model_name: str | None, steps: int, batch_size: int, lr: float,
          seed: int, overrides: tuple[str, ...], parent: str | None, tags: tuple[str, ...], device: str | None) -> None:
    """Train a model of FAMILY on a dataset and register it as a new version."""
    from hub.devices import default_device

    hub = ctx.hub
    options = TrainOptions(steps=steps, batch_size=batch_size, learning_rate=lr, seed=seed,
                           device=device or str(default_device()))
    config_overrides = _parse_assignments(overrides, "--set")
    # Bad names and config keys fail here, before the progress bar (datasets are cached, so no double work).
    hub.parts.family(family).default_config(hub.dataset(dataset)).replace(**config_overrides)
    with _progress() as bar:
        task = bar.add_task(f"train {family}", total=steps, info="")

        def on_progress(p: TrainProgress) -> None:
            bar.update(task, completed=p.step, info=f"loss {p.loss:.4f}")

        version = hub.train(family, dataset, model_name=model_name or f"{family}-{dataset}", options=options,
                            config_overrides=config_overrides, parent=parent, tags=tags,
                            progress=on_progress, command="genhub " + shlex.join(sys.argv[1:]))
    out.print(f"registered {version.model}:{version.version} (sha256:{version.artifact_digest[:12]})")


@cli.command()
@click.argument("ref", required=False)
@click.option("--task", help="Route instead of naming REF: the dataset the samples should look like (needs --budget-ms).")
@click.option("--condition", help="With --task: a class index or class name the samples must belong to.")
@request_fields.cli_options()
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Family-specific parameter.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="grid.png", show_default=True)
@click.option("--server", help="HOST:PORT of a genhub server; without it, generate in this process.")
@connection_options
@pass_hub
def generate(ctx: HubContext, ref: str | None, task: str | None, condition: str | None, params: tuple[str, ...],
             output: str, server: str | None, **options: Any) -> None:
    """Generate samples from REF (name, name:version or name@alias), or route by --task and --budget-ms; write a PNG grid.

    Every GenerateRequest field is an option (``hub.request_fields``); locally, the request is parsed and checked
    by the server's own code (``hub.server.requests.parse_generate``).
    """
    from hub.images import POINT_SAMPLES, save_samples
    from hub.server.requests import parse_generate

    fields = {name: options.pop(name) for name in request_fields.FIELDS}  # the rest: connection options
    num_samples, seed, budget_ms, label = (fields[k] for k in ("num_samples", "seed", "latency_budget_ms", "class_label"))
    if num_samples is not None and num_samples < 1:
        raise InvalidArgument("--num-samples", f"must be at least 1, got {num_samples}")
    if (ref is None) == (task is None):
        raise InvalidArgument("REF, --task", "give exactly one: a model reference, or --task DATASET with --budget-ms")
    if task is None and (budget_ms is not None or condition is not None):
        raise InvalidArgument("--budget-ms, --condition", "apply only with --task")
    if task is not None and budget_ms is None:
        raise InvalidArgument("--budget-ms", "is required with --task: the p50 latency in milliseconds one sample may take")
    extra = _parse_assignments(params, "--param")
    reason = ""
    if task is not None and not server:  # route here, as the server would (hub.server.services.route_request)
        wanted = condition if condition is not None else (str(label) if label is not None else None)
        route = ctx.hub.route_settings(task, budget_ms, wanted)  # type: ignore[arg-type]
        ref, reason = route.ref, f"; {route.describe()}"
        fields.update(sampler=fields["sampler"] or route.sampler, steps=fields["steps"] or route.steps, latency_budget_ms=None)
        if condition is not None:
            index = ctx.hub.class_index(task, condition)
            if label is not None and label != index:
                raise InvalidArgument("--label", f"is {label} but --condition {condition!r} is class {index}; give one of them")
            fields["class_label"] = index
    if not server:
        ctx.hub.load(ref)  # a bad reference or broken weights fail here, before any progress bar
    if server:  # the remote server knows the model: ask it for the dataset, never open a local registry
        from hub.server.commands import remote_dataset

        dataset = task if ref is None else remote_dataset(server, ref, home=ctx.home, **options)
        mixture = ctx.plugins[1].mixture(dataset) if dataset else None
    else:
        mixture = _local_mixture(ctx.hub, ref, task)
    fields["num_samples"] = num_samples = num_samples or (POINT_SAMPLES if mixture is not None else 16)
    with _progress(transient=True) as bar:
        task_id = bar.add_task(f"generate {ref or task}", total=None, info="")

        def on_step(event: StepEvent) -> None:
            bar.update(task_id, total=event.total, completed=event.step)

        if server:
            from hub.server.commands import generate_remote

            samples, described = generate_remote(
                server, ref, task=task, condition=condition, params=extra,
                progress=lambda step, total: bar.update(task_id, total=total, completed=step),
                home=ctx.home, **options, **fields,
            )
        else:
            from hub.client import build_request

            request = parse_generate(build_request(ref, params=extra, **fields)).request
            result = ctx.hub.generate(ref, request, on_step, seed=seed)  # type: ignore[arg-type]
            samples, described = result.samples, f"{result.version.model}:{result.version.version}{reason}"
    path = save_samples(samples, output, mixture=mixture)
    out.print(f"wrote {path} ({num_samples} samples from {described}, seed {seed})")


@cli.group("log")
def log_group() -> None:
    """The generation log: every request served, with its version, seeds and outcome."""


@log_group.command("prune")
@click.option("--older-than", required=True, metavar="AGE", help="Delete records older than AGE (e.g. 30d, 12h, 90m).")
@pass_hub
def log_prune(ctx: HubContext, older_than: str) -> None:
    """Delete old generation log records, to bound the registry's size."""
    from hub.registry.genlog import parse_age
    from hub.registry.orm import utcnow

    removed = ctx.hub.registry.prune_generations(utcnow() - parse_age(older_than))
    out.print(f"pruned {removed} generation log record(s) older than {older_than}")


def _local_mixture(hub: Hub, ref: str | None, task: str | None) -> tuple[list[list[float]], float] | None:
    """The true modes of the 2D dataset REF was trained on (or --task names), when this hub knows them."""
    try:
        return hub.mixture(task if ref is None else hub.resolve(ref).dataset)  # type: ignore[arg-type]
    except GenhubError:  # a reference only the remote server knows: plain scatter, default count of images
        return None


@cli.group("import")
def import_group() -> None:
    """Register a model from another format; plugins add the formats (e.g. `genhub import diffusers PATH --name NAME`)."""


@cli.command()
@click.argument("ref")
@click.argument("directory", type=click.Path(file_okay=False))
@pass_hub
def export(ctx: HubContext, ref: str, directory: str) -> None:
    """Write a version as a shippable checkpoint folder (model.safetensors, card.json, card.md)."""
    from hub.cards import export_checkpoint

    path = export_checkpoint(ctx.hub, ref, Path(directory))
    out.print(f"exported {ref} to {path}")


@cli.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out", show_default=True)
@click.option("-n", "--num-samples", type=click.IntRange(1, 64), default=16, show_default=True,
              help="Images per image model; 2D models draw 2000 points over their true modes.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--address", default="127.0.0.1:0", show_default=True, help="Where the demo server listens (port 0: any free port).")
@click.option("--metrics-address", metavar="HOST:PORT", help="Serve Prometheus metrics there while the demo runs.")
@pass_hub
def demo(ctx: HubContext, out_dir: str, num_samples: int, seed: int, address: str, metrics_address: str | None) -> None:
    """Serve the bundled models on a local gRPC server and write a PNG grid from each into OUT."""
    import time

    from hub.images import POINT_SAMPLES, save_samples
    from hub.metrics import Metrics
    from hub.server.app import BackgroundServer
    from hub.server.commands import generate_remote

    hub = ctx.hub
    bundled = [v for v in (hub.registry.resolve(m.name) for m in _all_models(hub)) if "pretrained" in v.tags]
    if not bundled:
        raise GenhubError("no bundled models are registered; install the plugins with scripts/setup.sh")
    table = Table("model", "family", "weights", "samples", "seconds", "grid")
    metrics = Metrics() if metrics_address else None
    with BackgroundServer(hub, address, metrics=metrics) as server, _progress() as bar:
        console.print(f"serving {len(bundled)} bundled models on {server.address}")
        if metrics is not None:
            console.print(f"metrics at http://{metrics.serve(metrics_address or '')}/metrics while the demo runs")
        for version in bundled:
            task = bar.add_task(f"generate {version.ref}", total=None, info="")
            started = time.perf_counter()
            mixture = hub.mixture(version.dataset)
            count = POINT_SAMPLES if mixture is not None else num_samples
            samples, _ = generate_remote(
                server.address, version.ref, num_samples=count, seed=seed, **demo_fields(version.tags),
                progress=lambda step, total, task=task: bar.update(task, total=total, completed=step),
                home=hub.home,
            )
            path = save_samples(samples, Path(out_dir) / f"{version.model}.png", mixture=mixture)
            table.add_row(version.ref, version.family, version.artifact_digest[:12], str(count),
                          f"{time.perf_counter() - started:.2f}", str(path))
    if metrics is not None:
        metrics.close()
    out.print(table)


def demo_fields(tags: list[str]) -> dict[str, Any]:
    """What the demo asks a bundled model for, from its ``demo.FIELD=VALUE`` tags (e.g. ``demo.prompt=a red circle``):
    any GenerateRequest field but the seed and the sample count, which the demo sets."""
    fields = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        name = key[5:]
        if sep and key.startswith("demo.") and name in request_fields.FIELDS and name not in ("seed", "num_samples"):
            fields[name] = request_fields.from_text(name, value)
    return fields


def _all_models(hub: Hub) -> list[Any]:
    models, token = hub.registry.list_models(page_size=1000)
    while token:
        more, token = hub.registry.list_models(page_size=1000, page_token=token)
        models += more
    return models


def _add_server_commands() -> None:
    from hub.ray.commands import deploy
    from hub.server.commands import serve
    from hub.server.token_commands import token

    cli.add_command(serve)
    cli.add_command(deploy)
    cli.add_command(token)


_add_server_commands()


def _add_eval_commands() -> None:
    from hub.eval.commands import card, eval_command, route

    for command in (eval_command, card, route):
        cli.add_command(command)


_add_eval_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point: load plugins, let them add commands, run; domain errors print one line."""
    try:
        plugins = load_plugins()
        plugins[0].add_commands(cli)
        cli.main(args=argv, obj=plugins, standalone_mode=False)
    except click.exceptions.Abort:
        console.print("Aborted.")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except GenhubError as exc:
        console.print(f"[red]Error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("Interrupted.")
        sys.exit(130)
