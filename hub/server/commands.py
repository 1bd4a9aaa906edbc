"""Command-line entry points: `genhub serve`, and the remote path of `genhub generate`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, Callable

import click
import torch

from hub.engine.jobs import DEFAULT_MAX_REQUEST_COST

DEFAULT_ADDRESS = "127.0.0.1:50051"  # same as hub.server.app.DEFAULT_ADDRESS, without importing grpc.aio here


@click.command()
@click.option("--address", default=DEFAULT_ADDRESS, show_default=True, help="HOST:PORT to listen on (port 0: any free port).")
@click.option("--max-batch", type=click.IntRange(min=1), default=64, show_default=True,
              help="Rows (samples; a guided one counts twice) per network pass, shared by every request of a model.")
@click.option("--max-request-cost", type=click.IntRange(min=1), default=DEFAULT_MAX_REQUEST_COST, show_default=True,
              help="Largest request, in network passes x rows x values per row; a model's serve.max_request_cost tag overrides it.")
@click.option("--max-queued-cost", type=click.IntRange(min=1), default=None,
              help="Cost a model may have admitted and unfinished; beyond it RESOURCE_EXHAUSTED. [default: 8 x --max-request-cost]")
@click.option("--max-request-seconds", type=click.FloatRange(min=0, min_open=True), default=600.0, show_default=True,
              help="Deadline of a request whose client sends none.")
@click.option("--max-loaded-models", type=click.IntRange(min=1), default=8, show_default=True,
              help="Models kept loaded; the least recently used idle one is unloaded past it.")
@click.option("--max-loaded-bytes", type=click.IntRange(min=1), default=None, help="Bytes of weights kept loaded (LRU, as above).")
@click.option("--request-level", is_flag=True, help="Batch whole requests only, not network passes (for comparison).")
@click.option("--grace", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds SIGTERM waits for calls in flight to finish.")
@click.option("--db", help="Registry SQLAlchemy URL (default: sqlite in the genhub home).")
@click.option("--home", type=click.Path(file_okay=False), help="genhub data folder.")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process (grpc.aio); ray: a Ray Serve app, one autoscaling deployment per model.")
@click.option("--overrides", type=click.Path(exists=True, dir_okay=False),
              help="ray: YAML of per-model serving settings (resources, autoscaling, batching).")
@click.option("--set", "assignments", multiple=True, metavar="MODEL.KEY=VALUE", help="ray: override one serving setting.")
@click.option("--ray-address", help="ray: join this cluster (e.g. auto) instead of starting a local instance.")
@click.option("--no-auth", is_flag=True, help="Serve without tokens: anyone who reaches the port may call every RPC.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="PEM certificate chain: serve TLS.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key of --tls-cert.")
@click.option("--tls-client-ca", type=click.Path(exists=True, dir_okay=False),
              help="PEM CA bundle: require client certificates it signed (mutual TLS).")
@click.option("--insecure", is_flag=True, help="Allow plaintext on a non-loopback --address (e.g. behind a TLS proxy).")
@click.option("--max-receive-mib", type=click.FloatRange(min=0.01), default=4.0, show_default=True,
              help="Largest request message accepted, MiB.")
@click.option("--no-reflection", is_flag=True, help="Do not serve gRPC reflection.")
@click.option("--health-needs-token", is_flag=True, help="grpc.health.v1 needs a generate token too (open by default).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one JSON object per line, with a record per generation request (request id, model, version, "
                   "code, durations).")
@click.option("--metrics-address", metavar="HOST:PORT",
              help="local: serve Prometheus metrics at http://HOST:PORT/metrics (off unless given; e.g. 127.0.0.1:9464).")
@click.option("--log-retention", metavar="AGE", help="Delete generation log records older than AGE (e.g. 30d), hourly.")
@click.option("--no-generation-log", is_flag=True, help="Do not record generations in the registry (generation ids are 0).")
@click.pass_context
def serve(ctx: click.Context, address: str, max_batch: int, max_request_cost: int, max_queued_cost: int | None,
          max_request_seconds: float, max_loaded_models: int, max_loaded_bytes: int | None, request_level: bool, grace: float,
          db: str | None, home: str | None, backend: str, overrides: str | None, assignments: tuple[str, ...],
          ray_address: str | None, no_auth: bool, tls_cert: str | None, tls_key: str | None, tls_client_ca: str | None,
          insecure: bool, max_receive_mib: float, no_reflection: bool, health_needs_token: bool, log_format: str, metrics_address: str | None,
          log_retention: str | None, no_generation_log: bool) -> None:
    """Serve the registry and generation over gRPC (package hub.v1) until SIGTERM.

    Calls need a token (see `genhub token`); the first start writes an admin and a generate token to
    tokens.json in the genhub home. Health checks and reflection stay open.
    """
    from hub.core import Hub
    from hub.errors import InvalidArgument
    from hub.registry.genlog import parse_age
    from hub.server.app import serve as serve_async
    from hub.tls import ServerTls, check_exposure

    from hub.server import logs

    logs.configure(log_format)
    parent = ctx.obj  # hub.cli's HubContext when run as `genhub serve`; None as `python -m hub.server`
    db_url, home_dir = db or getattr(parent, "db", None), home or getattr(parent, "home", None)
    if (tls_cert is None) != (tls_key is None) or (tls_client_ca and not tls_cert):
        raise InvalidArgument("--tls-cert, --tls-key", "TLS needs both the certificate and its key (and --tls-client-ca needs them)")
    tls = ServerTls(tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key else None
    check_exposure(address, tls, insecure)
    if no_auth:
        click.echo("warning: --no-auth: anyone who can reach the port can generate and move aliases", err=True)
    security = dict(auth_enabled=not no_auth, health_needs_token=health_needs_token)
    retention = parse_age(log_retention, "log_retention") if log_retention else None
    if metrics_address and backend == "ray":
        raise InvalidArgument("metrics_address", "is for the local backend; on Ray the replicas record the genhub_* "
                              "series through ray.serve.metrics, exported on Ray's own metrics port")
    # local: the bundled models are synced once the server listens, health NOT_SERVING meanwhile (not at all with
    # `genhub --no-bundled`)
    bundled = getattr(parent, "bundled", True)
    hub = Hub.open(db_url=db_url, home=home_dir, plugins=getattr(parent, "plugins", None), sync=bundled and backend == "ray")
    hub.log_retention, hub.log_enabled = retention, not no_generation_log
    if backend == "ray":
        from hub.ray.commands import serve_ray

        try:
            if tls is not None:
                raise InvalidArgument("--tls-cert", "Serve's gRPC proxy cannot serve TLS; terminate TLS in front of it "
                                      "(deploy/tls-ingress.yaml) and serve with --insecure on a non-loopback address")
            serve_ray(hub, address, db_url=db_url, home=home_dir, overrides=overrides, assignments=assignments,
                      ray_address=ray_address, auth_enabled=not no_auth)
        finally:
            hub.close()
        click.echo("genhub server stopped", err=True)
        return

    from hub.metrics import Metrics

    metrics = Metrics() if metrics_address else None

    def ready(handle: Any) -> None:
        # One parseable line: tests and scripts that ask for port 0 read the real port from it.
        click.echo(f"genhub serving on {handle.address} ({'request' if request_level else 'step'}-level batching, max batch "
                   f"{max_batch} rows, max request cost {max_request_cost:,}); SIGTERM drains and stops", err=True)
        if metrics is not None:
            click.echo(f"genhub metrics on http://{metrics.serve(metrics_address or '')}/metrics", err=True)
        sys.stderr.flush()

    try:
        asyncio.run(serve_async(hub, address, grace_s=grace, on_ready=ready, max_batch=max_batch,
                                max_request_cost=max_request_cost, max_queued_cost=max_queued_cost,
                                max_request_seconds=max_request_seconds, max_loaded_models=max_loaded_models,
                                max_loaded_bytes=max_loaded_bytes, step_level=not request_level, tls=tls, insecure=insecure,
                                max_receive_bytes=int(max_receive_mib * 1024 * 1024),
                                reflection_enabled=not no_reflection, metrics=metrics, sync=bundled, **security))
    finally:
        if metrics is not None:
            metrics.close()
        hub.close()  # writes the generation log's last records
    click.echo("genhub server stopped", err=True)


def remote_dataset(server: str, ref: str, *, home: str | Path | None = None, token: str | None = None, timeout: float | None = None,
                   tls_ca: str | None = None, tls_cert: str | None = None, tls_key: str | None = None) -> str | None:
    """The dataset the server's version ``ref`` was trained on; None when the server cannot say (unknown model, no access)."""
    from hub.client import Client
    from hub.errors import GenhubError
    from hub.registry.refs import parse_ref
    from hub.tls import ClientTls

    tls = ClientTls(tls_ca, tls_cert, tls_key) if tls_ca or tls_cert or tls_key else None
    try:
        parsed = parse_ref(ref)
        with Client(server, timeout=timeout or 10.0, token=token, home=home, tls=tls) as client:
            versions = client.get_model(parsed.model).versions
    except GenhubError:  # the generate call that follows reports the real error
        return None
    return versions[-1].dataset if versions else None


def generate_remote(
    server: str,
    ref: str | None,
    *,
    progress: Callable[[int, int], None] | None = None,
    timeout: float | None = None,
    token: str | None = None,
    home: str | Path | None = None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    **fields: Any,
) -> tuple[torch.Tensor, str]:
    """Generate on a genhub server, streaming progress; returns (samples, "name:version (digest) at server").

    ``fields`` are ``hub.client.build_request``'s (task, condition, params and the GenerateRequest fields).
    With ``task`` (and ``latency_budget_ms``) instead of ``ref`` the server routes; the description then
    ends with its reason. Without ``token``, the client reads ``tokens.json`` in ``home``; with any ``tls_*``
    it connects with TLS.
    """
    from hub.client import Client, RemoteGeneration, StepProgress
    from hub.tls import ClientTls

    tls = ClientTls(tls_ca, tls_cert, tls_key) if tls_ca or tls_cert or tls_key else None
    with Client(server, timeout=timeout, token=token, home=home, tls=tls) as client:
        result: RemoteGeneration | None = None
        for event in client.stream_generate(ref, **fields, format="tensor"):
            if isinstance(event, StepProgress):
                if progress is not None:
                    progress(event.step, event.total)
            else:
                result = event
    if result is None:  # the server always ends a stream with a result; this is a broken server
        raise RuntimeError(f"the server at {server} ended the stream without a result")
    described = f"{result.model} (sha256:{result.digest[:12]}) at {server}"
    return result.samples, described + (f"; {result.routed_reason}" if result.routed_reason else "")
