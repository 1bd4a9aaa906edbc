"""Command-line options shared by commands that talk to a genhub server (no grpc import: the CLI loads this)."""

from __future__ import annotations

from typing import Any, Callable

import click

F = Callable[..., Any]


def connection_options(command: F) -> F:
    """``--token``, ``--tls-ca``, ``--tls-cert``, ``--tls-key``: passed on as keyword arguments of those names."""
    for option in reversed([
        click.option("--token", envvar="GENHUB_TOKEN",
                     help="API token (default: $GENHUB_TOKEN, else tokens.json in the genhub home)."),
        click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False),
                     help="PEM CA bundle to verify a TLS server (connects with TLS when given)."),
        click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Client certificate (PEM), for mutual TLS."),
        click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="Client private key (PEM), for mutual TLS."),
    ]):
        command = option(command)
    return command
