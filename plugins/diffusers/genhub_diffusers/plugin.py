"""genhub plugin entry point (group ``genhub``, name ``diffusers``): the "diffusers" family and ``genhub import diffusers``."""

from __future__ import annotations

from typing import Callable

import click

from hub import hookimpl
from hub.errors import PluginError
from hub.model import ModelFamily

from genhub_diffusers.family import DiffusersFamily


@hookimpl
def register_models(register: Callable[[ModelFamily], None]) -> None:
    register(DiffusersFamily())


@hookimpl
def register_commands(cli: click.Group) -> None:
    from genhub_diffusers.commands import import_diffusers

    group = cli.commands.get("import")
    if not isinstance(group, click.Group):
        raise PluginError("the genhub CLI has no `import` group to add `diffusers` to; upgrade genhub")
    group.add_command(import_diffusers)
