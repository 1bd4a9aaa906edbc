"""Plugin discovery: entry points in the ``genhub`` group, plus the built-ins.

A plugin that fails to import, or whose hook raises, is recorded as failed and
the hub carries on. Two plugins claiming the same name is a ``StartupError``
that names both.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pluggy

from hub import hookspecs
from hub.datasets import DatasetSpec
from hub.errors import NotFound, StartupError
from hub.model import ModelFamily, PretrainedModel
from hub.sampling import Sampler, SamplerRegistry
from hub.text import TextEncoder, TextEncoderRegistry

GROUP = "genhub"
# Built-ins are ordinary plugins, registered by module name like llm's DEFAULT_PLUGINS.
DEFAULT_PLUGINS = ("hub.builtin.datasets",)


@dataclass
class PluginInfo:
    name: str
    version: str | None
    status: str  # "loaded" or "failed"
    error: str | None = None
    distribution: str | None = None


@dataclass
class Contributions:
    """What every loaded plugin registered, by name, with the plugin that owns each."""

    families: dict[str, ModelFamily] = field(default_factory=dict)
    samplers: SamplerRegistry = field(default_factory=SamplerRegistry)
    text_encoders: TextEncoderRegistry = field(default_factory=TextEncoderRegistry)
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    pretrained: dict[str, PretrainedModel] = field(default_factory=dict)
    owners: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, name) -> plugin

    def family(self, name: str) -> ModelFamily:
        try:
            return self.families[name]
        except KeyError:
            raise NotFound(f"no model family {name!r}; installed families: {sorted(self.families)}") from None

    def dataset(self, name: str) -> DatasetSpec:
        try:
            return self.datasets[name]
        except KeyError:
            raise NotFound(f"no dataset {name!r}; available: {sorted(self.datasets)}") from None

    def mixture(self, dataset_name: str) -> tuple[list[list[float]], float] | None:
        """(mode centres, std) of a 2D mixture dataset, for drawing samples over the true modes; None otherwise.

        Needs no registry, so a client drawing a remote server's samples can ask too.
        """
        spec = self.datasets.get(dataset_name)
        if spec is None or spec.kind != "points":
            return None
        meta = spec.load("train").meta
        return (meta["centres"], float(meta["std"])) if "centres" in meta and "std" in meta else None


class PluginHost:
    """Loads plugins and collects what they register."""

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm or new_plugin_manager()
        self.infos: dict[str, PluginInfo] = {}

    def load_defaults(self) -> None:
        for module_name in DEFAULT_PLUGINS:
            self._register_module(module_name, module_name, version=_own_version(), distribution="genhub")

    def load_entry_points(self, only: Iterable[str] | None = None) -> None:
        """Import every ``genhub`` entry point; ``only`` limits to those names."""
        wanted = set(only) if only is not None else None
        for ep in sorted(md.entry_points(group=GROUP), key=lambda e: e.name):
            if wanted is not None and ep.name not in wanted:
                continue
            if ep.name in self.infos:  # the same name from two distributions: keep the first, say why
                self._fail(ep.name, None, f"entry point name {ep.name!r} is already used by {self.infos[ep.name].distribution}", ep.dist)
                continue
            dist = ep.dist
            version = dist.version if dist else None
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin is reported, never fatal
                self._fail(ep.name, version, _describe(exc), dist)
                continue
            self._register_object(ep.name, module, version, dist.name if dist else None)

    def register(self, plugin: Any, name: str, version: str | None = None) -> None:
        """Register an in-process plugin object (tests, embedding applications)."""
        self._register_object(name, plugin, version, None)

    def _register_module(self, name: str, module_name: str, version: str | None, distribution: str | None) -> None:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            self._fail(name, version, _describe(exc), distribution)
            return
        self._register_object(name, module, version, distribution)

    def _register_object(self, name: str, plugin: Any, version: str | None, distribution: str | None) -> None:
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()  # an implementation with no matching hookspec is a plugin bug
        except Exception as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self._fail(name, version, _describe(exc), distribution)
            return
        self.infos[name] = PluginInfo(name, version, "loaded", None, distribution)

    def _fail(self, name: str, version: str | None, error: str, distribution: Any) -> None:
        dist_name = getattr(distribution, "name", distribution)
        self.infos[name] = PluginInfo(name, version, "failed", error, dist_name)

    def collect(self) -> Contributions:
        """Call every registration hook, one plugin at a time, so one failure stays local."""
        found = Contributions()
        for plugin_name, plugin in list(self.pm.list_name_plugin()):
            if plugin is None or self.infos.get(plugin_name, PluginInfo(plugin_name, None, "loaded")).status != "loaded":
                continue
            staged = _Staged(plugin_name, found)
            try:
                for hook_name, adder in staged.hooks():
                    _call_one(self.pm, plugin, hook_name, register=adder)
            except Exception as exc:  # the plugin's own bug: record it, drop what it staged
                self._mark_failed(plugin_name, exc)
                continue
            staged.commit()  # a StartupError (duplicate name) propagates: it is the user's to fix
        return found

    def add_commands(self, cli: Any) -> None:
        """Let each loaded plugin add CLI subcommands; one that raises is marked failed."""
        for plugin_name, plugin in list(self.pm.list_name_plugin()):
            if plugin is None or self.infos.get(plugin_name) is None or self.infos[plugin_name].status != "loaded":
                continue
            try:
                _call_one(self.pm, plugin, "register_commands", cli=cli)
            except Exception as exc:
                self._mark_failed(plugin_name, exc)

    def _mark_failed(self, plugin_name: str, exc: BaseException) -> None:
        info = self.infos[plugin_name]
        self.infos[plugin_name] = PluginInfo(info.name, info.version, "failed", _describe(exc), info.distribution)


class _Staged:
    """One plugin's registrations, kept apart until all its hooks have run."""

    def __init__(self, plugin: str, into: Contributions) -> None:
        self.plugin = plugin
        self.into = into
        self.families: list[ModelFamily] = []
        self.samplers: list[Sampler] = []
        self.text_encoders: list[TextEncoder] = []
        self.datasets: list[DatasetSpec] = []
        self.pretrained: list[PretrainedModel] = []

    def hooks(self) -> list[tuple[str, Callable[[Any], None]]]:
        return [
            ("register_models", self.families.append),
            ("register_samplers", self.samplers.append),
            ("register_text_encoders", self.text_encoders.append),
            ("register_datasets", self.datasets.append),
            ("register_pretrained", self.pretrained.append),
        ]

    def commit(self) -> None:
        for kind, items, table in (
            ("model family", self.families, self.into.families),
            ("dataset", self.datasets, self.into.datasets),
            ("pretrained model", self.pretrained, self.into.pretrained),
        ):
            for item in items:
                self._claim(kind, item.name)
                table[item.name] = item  # type: ignore[index]
        for sampler in self.samplers:
            self._claim("sampler", sampler.name)
            self.into.samplers.add(sampler)
        for encoder in self.text_encoders:
            self._claim("text encoder", encoder.name)
            self.into.text_encoders.add(encoder)

    def _claim(self, kind: str, name: str) -> None:
        owner = self.into.owners.get((kind, name))
        if owner is not None and owner != self.plugin:
            raise StartupError(
                f"{kind} name {name!r} is registered by two plugins: {owner!r} and {self.plugin!r}; "
                f"uninstall one of them or disable it with GENHUB_DISABLE_PLUGINS={self.plugin}"
            )
        self.into.owners[(kind, name)] = self.plugin


def _call_one(pm: pluggy.PluginManager, plugin: Any, hook_name: str, **kwargs: Any) -> None:
    """Call one plugin's implementation of one hook (if it has one)."""
    caller = pm.subset_hook_caller(hook_name, remove_plugins=[p for p in pm.get_plugins() if p is not plugin])
    caller(**kwargs)


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    return pm


def load_plugins(extra: Iterable[tuple[str, Any]] = ()) -> tuple[PluginHost, Contributions]:
    """Load built-ins and entry points (honouring GENHUB_LOAD_PLUGINS / GENHUB_DISABLE_PLUGINS)."""
    host = PluginHost()
    host.load_defaults()
    only = os.environ.get("GENHUB_LOAD_PLUGINS")
    host.load_entry_points(only=[n.strip() for n in only.split(",") if n.strip()] if only is not None else None)
    for name, plugin in extra:
        host.register(plugin, name=name)
    for name in _disabled():
        plugin = host.pm.get_plugin(name)
        if plugin is not None:
            host.pm.unregister(plugin)
            host.infos[name] = PluginInfo(name, host.infos[name].version, "disabled", None, host.infos[name].distribution)
    return host, host.collect()


def _disabled() -> list[str]:
    return [n.strip() for n in os.environ.get("GENHUB_DISABLE_PLUGINS", "").split(",") if n.strip()]


def _describe(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _own_version() -> str | None:
    try:
        return md.version("genhub")
    except md.PackageNotFoundError:
        return None
