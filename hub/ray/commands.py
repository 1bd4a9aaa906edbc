"""Command-line entry points of the Ray backend: `genhub serve --backend ray` and `genhub deploy render`."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from hub.ray.constants import DEFAULT_GRPC_PORT


def serve_ray(hub: Any, address: str, *, db_url: str | None, home: str | None, overrides: str | None,
              assignments: tuple[str, ...], ray_address: str | None, auth_enabled: bool = True) -> None:
    """Run the genhub Serve app until SIGTERM/SIGINT; a local Ray instance unless ``ray_address``.

    On a local instance Serve's gRPC proxy listens on ``address``'s host only (``hub.ray.bind``).
    """
    from hub import auth
    from hub.ray import app, runner
    from hub.ray.settings import Overrides, fit_to_cpus, log_assignments
    from hub.registry.db import require_shared_backend

    # --log-retention and --no-generation-log (set on ``hub``) reach the replicas as settings of every model
    settings = app.plan(hub, Overrides.load(overrides, (*assignments, *log_assignments(hub.log_retention, hub.log_enabled))))
    if ray_address is None:  # a local instance cannot grow: make every model's first replica fit on this machine
        settings, factor = fit_to_cpus(settings, float(os.cpu_count() or 1))
        if factor < 1.0:
            click.echo(f"local Ray: {len(settings)} models ask for more CPUs than this machine's {os.cpu_count()}; "
                       f"every num_cpus scaled by {factor:.2f} so each gets a replica", err=True)
    host, port_text = address.rsplit(":", 1)
    port = int(port_text) or runner.free_port()
    if auth_enabled and (written := auth.create_initial_tokens(hub.registry, hub.home)) is not None:
        click.echo(f"created an admin and a generate token; wrote them to {written} (mode 0600)", err=True)
    stop = threading.Event()
    try:  # one node (a local instance) keeps SQLite; checked before Serve starts anything on the cluster
        runner.start(port, ray_address=ray_address, host=host.strip("[]"),
                     check=lambda: require_shared_backend(hub.registry.url, runner.alive_nodes()))
    except BaseException:
        runner.stop(local=ray_address is None)
        raise
    for sig in (signal.SIGTERM, signal.SIGINT):  # after ray.init, which installs handlers of its own
        signal.signal(sig, lambda *_: stop.set())
    try:
        runner.run(app.build(app.HubArgs(db_url, home), settings, auth_enabled=auth_enabled))
        click.echo(f"genhub serving on {host}:{port} (Ray Serve, {len(settings)} model deployment(s): "
                   f"{', '.join(sorted(settings)) or 'none'}); SIGTERM stops", err=True)
        sys.stderr.flush()
        stop.wait()
    finally:
        runner.stop(local=ray_address is None)


@click.group()
def deploy() -> None:
    """Cluster deployment files (Ray Serve / KubeRay)."""


@deploy.command("render")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default="deploy/serve-config.yaml", show_default=True)
@click.option("--overrides", type=click.Path(exists=True, dir_okay=False), help="YAML of per-model serving settings.")
@click.option("--set", "assignments", multiple=True, metavar="MODEL.KEY=VALUE", help="Override one setting (*.KEY: every model).")
@click.option("--model", "models", multiple=True, help="Serve only these models (default: every model with a version).")
@click.option("--cluster-db", help="Registry URL as the cluster sees it (default: the one used here).")
@click.option("--cluster-home", help="genhub home on the cluster's shared filesystem (default: the one used here).")
@click.option("--grpc-port", type=int, default=DEFAULT_GRPC_PORT, show_default=True)
@click.pass_obj
def render(ctx: Any, output: str, overrides: str | None, assignments: tuple[str, ...], models: tuple[str, ...],
           cluster_db: str | None, cluster_home: str | None, grpc_port: int) -> None:
    """Write a Ray Serve config for the models in the registry (resources and autoscaling from their tags)."""
    from hub.ray import app
    from hub.ray.deploy import render_config, write_config
    from hub.ray.settings import Overrides

    hub = ctx.hub
    settings = app.plan(hub, Overrides.load(overrides, assignments), list(models) or None)
    # Without --cluster-db the cluster uses the registry in its genhub home (the shared filesystem).
    config = render_config(settings, db_url=cluster_db or ctx.db, home=cluster_home or ctx.home, grpc_port=grpc_port)
    write_config(config, Path(output))
    click.echo(f"wrote {output}: {len(settings)} model deployment(s); run it with `serve deploy {output}`", err=True)
