"""`genhub token create|list|revoke`: API tokens in the registry (hashes only; see hub.auth)."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

from hub import auth

out = Console()


@click.group()
def token() -> None:
    """API tokens for `genhub serve` (scopes: generate, admin)."""


@token.command("create")
@click.option("--scope", type=click.Choice(auth.SCOPES), required=True,
              help="generate: Generate, StreamGenerate and registry reads; admin: also SetAlias.")
@click.option("--name", help="A name to list and revoke it by (default: SCOPE-<8 hex>).")
@click.option("--expires", help="Lifetime, e.g. 30d, 12h, 90m (default: never).")
@click.pass_obj
def create(ctx: Any, scope: str, name: str | None, expires: str | None) -> None:
    """Create a token and print it once (only its hash is stored)."""
    record, secret = ctx.hub.registry.tokens.create(scope, name, auth.parse_duration(expires) if expires else None)
    until = f", expires {record.expires_at:%Y-%m-%d %H:%M} UTC" if record.expires_at else ""
    click.echo(f"created token {record.name!r} (scope {record.scope}{until}); it is shown only now:", err=True)
    click.echo(secret)


@token.command("list")
@click.pass_obj
def list_tokens(ctx: Any) -> None:
    """List tokens: name, scope, creation and expiry (never the tokens themselves)."""
    table = Table("name", "scope", "created (UTC)", "expires (UTC)")
    for record in ctx.hub.registry.tokens.list():
        expires = f"{record.expires_at:%Y-%m-%d %H:%M}" + (" (expired)" if record.expired() else "") if record.expires_at else "never"
        table.add_row(record.name, record.scope, f"{record.created_at:%Y-%m-%d %H:%M}", expires)
    out.print(table)


@token.command("revoke")
@click.argument("name")
@click.pass_obj
def revoke(ctx: Any, name: str) -> None:
    """Delete token NAME; servers refuse it within a second."""
    ctx.hub.registry.tokens.revoke(name)
    click.echo(f"revoked token {name!r}", err=True)
