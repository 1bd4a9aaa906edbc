"""The hub: plugins, registry and artifact store wired together.

Everything a front end needs (the CLI, the gRPC server, the Ray deployments)
goes through ``Hub``: resolve a model reference, load its weights verified by
digest, sample, train and register a new version.
"""

from __future__ import annotations

import re
import shlex
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch

from hub.artifacts import ArtifactStore
from hub.datasets import Dataset
from hub.devices import default_device, hardware_description
from hub.errors import FailedPrecondition, GenhubError, InvalidArgument, clean_message
from hub.model import (
    BuildContext,
    GenerativeModel,
    ModelFamily,
    PretrainedModel,
    SampleRequest,
    StepCallback,
    TrainOptions,
    TrainProgress,
    can_train,
)
from hub.plugins import Contributions, PluginHost, PluginInfo, load_plugins
from hub.registry import Registry, VersionRecord
from hub.registry.genlog import GenerationLog
from hub.registry.paths import default_artifacts_root, default_db_url, default_home

if TYPE_CHECKING:
    from hub.eval.evaluate import EvalOptions
    from hub.eval.routing import Route
    from hub.registry.records import MetricRecord


@dataclass
class LoadedModel:
    version: VersionRecord
    family: ModelFamily
    model: GenerativeModel
    device: torch.device


@dataclass
class Generation:
    samples: torch.Tensor  # [N, C, H, W] in [-1, 1] or [N, 2]
    version: VersionRecord
    duration_s: float
    generation_id: int | None = None


def model_key(version: VersionRecord) -> tuple[str, str, str]:
    """What a loaded model is cached and batched under: its weights, its family and its config (as JSON). Versions may
    share weights with different settings (e.g. a default truncation); each gets a model built from its own."""
    return version.artifact_digest, version.family, version.config_json


class Hub:
    """One hub: a registry, an artifact store and the loaded plugins."""

    def __init__(self, registry: Registry, artifacts: ArtifactStore, host: PluginHost, parts: Contributions) -> None:
        self.registry = registry
        self.artifacts = artifacts
        self.host = host
        self.parts = parts
        self._loaded: dict[tuple[str, str, str, str], LoadedModel] = {}  # (*model_key(version), device)
        self.home: Path | None = None  # set by Hub.open: where tokens.json lives
        self._load_lock = threading.RLock()  # re-entrant: a model may load the versions it builds on (an ldm its vae)
        self._log: GenerationLog | None = None
        self._log_lock = threading.Lock()
        self.log_retention: timedelta | None = None  # generation log rows older than this are pruned (hourly)
        self.log_enabled = True  # False: generations are not logged (`genhub serve --no-generation-log`)

    @classmethod
    def open(
        cls,
        db_url: str | None = None,
        home: Path | str | None = None,
        *,
        artifacts_root: Path | str | None = None,
        extra_plugins: Iterable[tuple[str, Any]] = (),
        plugins: tuple[PluginHost, Contributions] | None = None,
        sync: bool = True,
    ) -> Hub:
        """Load plugins (unless already loaded), open and migrate the registry, sync bundled models."""
        home_path = Path(home) if home is not None else default_home()
        host, parts = plugins if plugins is not None else load_plugins(extra_plugins)
        registry = Registry(db_url or default_db_url(home_path))
        artifacts = ArtifactStore(Path(artifacts_root) if artifacts_root else default_artifacts_root(home_path))
        artifacts.cleanup_temp()
        hub = cls(registry, artifacts, host, parts)
        hub.home = home_path
        if sync:
            hub.sync()
        return hub

    def close(self) -> None:
        """Write the generation log's queued records, then release the models and the registry."""
        with self._log_lock:
            log, self._log = self._log, None
        if log is not None:
            log.close()
        self._loaded.clear()
        self.registry.close()

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plugins ---------------------------------------------------------------------------

    def plugins(self) -> list[PluginInfo]:
        return sorted(self.host.infos.values(), key=lambda p: p.name)

    def context(self) -> BuildContext:
        return BuildContext(
            samplers=self.parts.samplers, load_version=lambda ref: self.load(ref).model, text_encoders=self.parts.text_encoders
        )

    def sync(self) -> None:
        """Record plugin status and import bundled checkpoints; idempotent."""
        self.registry.sync_plugins([(p.name, p.version or "", p.status, p.error) for p in self.plugins()])  # in-process plugins have no version
        for pretrained in _parents_first(list(self.parts.pretrained.values())):
            self._sync_pretrained(pretrained)

    def _sync_pretrained(self, pretrained: PretrainedModel) -> None:
        weights = pretrained.weights
        digest = self.artifacts.put_file(weights) if isinstance(weights, (str, Path)) else self.artifacts.put(weights)
        owner = self.parts.owners.get(("pretrained model", pretrained.name), "")
        self.registry.ensure_model(pretrained.name, pretrained.family, owner, description=_first_line(pretrained.card))
        if self.registry.find_version_by_digest(pretrained.name, digest) is not None:
            return
        self.registry.add_version(
            pretrained.name,
            config=pretrained.config,
            artifact_digest=digest,
            dataset=pretrained.dataset,
            parent=pretrained.parent,
            tags=["pretrained", *pretrained.tags],
            card=pretrained.card.read_text() if pretrained.card else None,
            training_run=pretrained.training or None,
            metrics=_pretrained_metrics(pretrained),
        )

    # -- models ----------------------------------------------------------------------------

    def resolve(self, ref: str) -> VersionRecord:
        return self.registry.resolve(ref)

    def build(self, family_name: str, config: dict[str, Any]) -> tuple[ModelFamily, GenerativeModel]:
        family = self.parts.family(family_name)
        return family, family.build(family.config_class.from_dict(config), self.context())

    def load(self, ref: str, device: torch.device | str | None = None) -> LoadedModel:
        """The model behind ``ref``, weights verified against their digest; cached."""
        version = self.resolve(ref)
        device = torch.device(device) if device is not None else default_device()
        key = (*model_key(version), str(device))
        with self._load_lock:
            cached = self._loaded.get(key)
            if cached is not None:
                return LoadedModel(version, cached.family, cached.model, device)
            family, model = self.build(version.family, version.config)
            model.load_state_dict(self.artifacts.get(version.artifact_digest))
            model = model.to(device)
            loaded = LoadedModel(version, family, model, device)
            self._loaded[key] = loaded
            return loaded

    def unload(self, artifact_digest: str, family: str, config: str | None = None) -> int:
        """Drop the cached models of these weights (of one ``model_key`` config, or all; on every device); returns
        how many were dropped.

        A server evicting a model calls this so the hub's cache does not keep the weights alive.
        """
        with self._load_lock:
            keys = [k for k in self._loaded if k[:2] == (artifact_digest, family) and config in (None, k[2])]
            for key in keys:
                del self._loaded[key]
        return len(keys)

    def generate(
        self, ref: str, request: SampleRequest, callback: StepCallback | None = None, *, log: bool = True, seed: int | None = None
    ) -> Generation:
        """Sample from a model in this process; the generation is logged in the registry."""
        loaded = self.load(ref)
        start = time.perf_counter()
        status, error = "ok", None
        try:
            loaded.model.capabilities.check(request)
            samples = loaded.model.sample(request, callback)
            return Generation(samples.cpu(), loaded.version, time.perf_counter() - start)
        except GenhubError as exc:
            status, error = type(exc).__name__, str(exc)
            raise
        finally:
            if log:
                self.log_generation(loaded.version, request, seed, time.perf_counter() - start, status, error)

    @property
    def generation_log(self) -> GenerationLog:
        """The batched background writer of the generation log (started on first use; ``close`` flushes it)."""
        with self._log_lock:
            if self._log is None:
                self._log = GenerationLog(self.registry, retention=self.log_retention)
            return self._log

    def log_generation(
        self, version: VersionRecord, request: SampleRequest, seed: int | None, duration_s: float, status: str, error: str | None
    ) -> int:
        """Queue one generation record for the background writer and return its id (0: logging is off).

        No database work here, except reserving ids on the rare call that finds the reserved block used up.
        """
        if not self.log_enabled:
            return 0
        params = request.logged()
        return self.generation_log.submit(
            version.id,
            seed=seed,
            params=params,
            num_samples=request.num_samples,
            duration_s=duration_s,
            status=status,
            error=clean_message(error) if error is not None else None,  # bounded, like what the client saw
            artifact_digest=version.artifact_digest,
        )

    # -- training --------------------------------------------------------------------------

    def dataset(self, name: str, split: str = "train") -> Dataset:
        return self.parts.dataset(name).load(split)

    def mixture(self, dataset_name: str) -> tuple[list[list[float]], float] | None:
        """(mode centres, std) of a 2D mixture dataset, for drawing samples over the true modes; None otherwise."""
        return self.parts.mixture(dataset_name)

    def train(
        self,
        family_name: str,
        dataset_name: str,
        *,
        model_name: str,
        options: TrainOptions,
        config_overrides: dict[str, Any] | None = None,
        parent: str | None = None,
        tags: Iterable[str] = (),
        progress: Callable[[TrainProgress], None] | None = None,
        command: str | None = None,
    ) -> VersionRecord:
        """Train a new model version and register it with its training run.

        The weights are written to the artifact store atomically first, then the
        version, its training run and the ``latest`` alias in one transaction: a
        process killed at any moment leaves no version without its artifact.
        """
        family = self.parts.family(family_name)
        dataset = self.dataset(dataset_name, "train")
        config = family.default_config(dataset)
        if config_overrides:
            config = config.replace(**config_overrides)
        parent_version = self.resolve(parent) if parent is not None else None
        teacher_key = getattr(family, "parent_config_key", None)
        if parent_version is not None and teacher_key:
            # The parent is a teacher (e.g. distillation): pin its exact version in the config and
            # record it as lineage; its weights are not the student's.
            config = config.replace(**{teacher_key: parent_version.ref})
        model = family.build(config, self.context())
        if not can_train(model):
            raise FailedPrecondition(
                f"family {family_name!r} only samples: its weights are trained elsewhere and registered as they are "
                "(a plugin's pretrained checkpoint, or `genhub import`); it cannot be trained here"
            )
        if parent_version is not None and not teacher_key:
            if parent_version.family != family_name:
                raise InvalidArgument("parent", f"{parent} is a {parent_version.family!r} model, not {family_name!r}")
            model.load_state_dict(self.artifacts.get(parent_version.artifact_digest))
        parent = parent_version.ref if parent_version is not None else None
        device = torch.device(options.device)
        model = model.to(device)
        torch.manual_seed(options.seed)
        started = time.time()
        result = model.train(dataset, options, progress)
        wall = time.time() - started
        # Training may fill in config values measured from the data (e.g. a VAE's latent scale factor).
        config = getattr(model, "config", config)
        digest = self.artifacts.put(
            {k: v.detach().cpu() for k, v in model.state_dict().items()},
            metadata={"family": family_name, "config": config.to_json()},
        )
        plugin = self.parts.owners.get(("model family", family_name), "")
        self.registry.ensure_model(model_name, family_name, plugin, description=f"{family_name} trained on {dataset_name}")
        return self.registry.add_version(
            model_name,
            config=config.to_dict(),
            artifact_digest=digest,
            dataset=dataset_name,
            parent=parent,
            tags=list(tags),
            training_run={
                "command": command or shlex.join(sys.argv),
                "seed": options.seed,
                "steps": options.steps,
                "wall_time_s": wall,
                "losses": result.losses,
                "hardware": hardware_description(device),
                "started_at": datetime.fromtimestamp(started, timezone.utc),
                "finished_at": datetime.now(timezone.utc),
            },
        )

    # -- evaluation and routing ------------------------------------------------------------

    def evaluate(self, ref: str, options: EvalOptions | None = None) -> list[MetricRecord]:
        """Measure quality, floor and speed of ``ref`` and record them in the registry (see ``hub.eval.evaluate``)."""
        from hub.eval.evaluate import evaluate

        return evaluate(self, ref, options)

    def route_settings(
        self, dataset: str, budget_ms: float, condition: int | str | None = None, *, hardware: str | None = None
    ) -> Route:
        """The best-quality version of ``dataset`` whose measured latency fits, with its sampler and steps.

        ``condition`` is a class index or class name of the dataset; only class-conditional versions serve it.
        Ties, empty choices and which figures count: ``hub.eval.routing``.
        """
        from hub.eval.routing import choose, gather

        self.parts.dataset(dataset)  # NotFound names the datasets there are
        if condition is not None:
            condition = self.class_index(dataset, condition)
        return choose(gather(self.registry, dataset), dataset, budget_ms,
                      hardware=hardware or hardware_description(), condition=condition)

    def route(self, dataset: str, budget_ms: float, condition: int | str | None = None) -> VersionRecord:
        """``route_settings`` reduced to the version: the best-quality one whose p50 latency fits ``budget_ms``."""
        return self.route_settings(dataset, budget_ms, condition).version

    def class_index(self, dataset: str, condition: int | str) -> int:
        """A class of ``dataset`` by index or by name (e.g. "7" or "a red circle, top left")."""
        names = self.dataset(dataset, "test").class_names or []
        if not names:
            raise InvalidArgument("condition", f"{dataset!r} has no classes to condition on; leave the condition unset")
        if isinstance(condition, str):
            if condition in names:
                return names.index(condition)
            if not condition.isdigit():
                shown = ", ".join(repr(n) for n in names[:6]) + (" ..." if len(names) > 6 else "")
                raise InvalidArgument("condition", f"{condition!r} is not a class of {dataset!r}; classes: {shown}")
            condition = int(condition)
        if isinstance(condition, bool) or not isinstance(condition, int) or not 0 <= condition < len(names):
            raise InvalidArgument("condition", f"class {condition!r} is out of range for {dataset!r}; use 0 to {len(names) - 1}")
        return condition


def _first_line(path: Path | None) -> str:
    if path is None:
        return ""
    for line in path.read_text().splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line
    return ""


def _pretrained_metrics(pretrained: PretrainedModel) -> list[dict[str, Any]] | None:
    """A bundled checkpoint's figures as registry metric rows."""
    if isinstance(pretrained.metrics, dict):
        return [{"name": k, "value": v, "data": pretrained.dataset} for k, v in pretrained.metrics.items()] or None
    return [dict(m) for m in pretrained.metrics] or None


def _parents_first(items: list[PretrainedModel]) -> list[PretrainedModel]:
    """Bundled checkpoints ordered so that a parent (another bundled model) is synced before its children."""
    ordered: list[PretrainedModel] = []
    placed: set[str] = set()
    pending = list(items)
    while pending:
        names = {p.name for p in pending}
        ready = [p for p in pending if not p.parent or re.split(r"[:@]", p.parent)[0] not in names - {p.name}]
        ready = ready or pending[:1]  # a cycle: keep going, the registry reports the missing parent
        for p in ready:
            ordered.append(p)
            placed.add(p.name)
        pending = [p for p in pending if p.name not in placed]
    return ordered
