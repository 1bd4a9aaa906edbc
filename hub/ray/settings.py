"""Per-model serving settings: resources, autoscaling and batching of one Ray Serve deployment.

Where they come from, later sources winning:

1. defaults (``ServeSettings()``);
2. the registry: tags ``serve.KEY=VALUE`` on the version a model's ``latest`` alias points at
   (a plugin ships them in its checkpoint's ``card.json`` tags, e.g. ``serve.num_gpus=0.5``);
3. an overrides YAML file: ``{models: {NAME: {KEY: VALUE}}, default: {KEY: VALUE}}``;
4. ``--set NAME.KEY=VALUE`` on the command line (``*.KEY=VALUE`` for every model).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable, Mapping

from hub.engine.jobs import DEFAULT_MAX_REQUEST_COST
from hub.errors import InvalidArgument

TAG_PREFIX = "serve."


@dataclass(frozen=True)
class ServeSettings:
    """How one model is served: one Serve deployment, its replicas multiplexing the model's versions."""

    num_cpus: float = 1.0  # per replica; fractional allowed
    num_gpus: float = 0.0  # per replica; fractional (0.25: four replicas share a GPU)
    memory_gb: float = 0.0  # per replica, for Ray's scheduler; 0: unset
    min_replicas: int = 1
    max_replicas: int = 1
    initial_replicas: int | None = None  # None: min_replicas
    target_ongoing_requests: float = 2.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    metrics_interval_s: float = 10.0
    look_back_period_s: float = 30.0
    max_ongoing_requests: int = 16  # per replica: requests in its engine (queued or sampling)
    max_queued_requests: int = 64  # per ingress replica, waiting for a free replica; more: RESOURCE_EXHAUSTED; -1: no limit
    max_batch_size: int = 64  # rows (samples; guided ones count twice) per network pass of the replica's engine
    max_request_cost: int = DEFAULT_MAX_REQUEST_COST  # network passes x rows x values; more: INVALID_ARGUMENT
    max_request_seconds: float = 600.0  # deadline of a request that brings none
    max_versions_per_replica: int = 2  # weights loaded at once per replica (LRU; evicted ones are freed)
    max_loaded_bytes: int = 0  # bytes of weights loaded at once per replica (LRU); 0: no byte limit
    generation_log: int = 1  # 1: replicas record each generation in the registry's log; 0: not (--no-generation-log)
    log_retention_s: float = 0.0  # replicas delete log records older than this, hourly; 0: keep all (--log-retention)

    def __post_init__(self) -> None:
        for name in ("num_cpus", "num_gpus", "memory_gb", "max_loaded_bytes", "log_retention_s"):
            if getattr(self, name) < 0:
                raise InvalidArgument(name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("max_replicas", "max_ongoing_requests", "max_batch_size", "max_versions_per_replica", "max_request_cost"):
            if getattr(self, name) < 1:
                raise InvalidArgument(name, f"must be >= 1, got {getattr(self, name)}")
        if self.max_queued_requests < 1 and self.max_queued_requests != -1:
            raise InvalidArgument("max_queued_requests", f"must be >= 1, or -1 for no limit, got {self.max_queued_requests}")
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise InvalidArgument("min_replicas", f"must be between 0 and max_replicas ({self.max_replicas}), got {self.min_replicas}")
        initial = self.initial_replicas
        if initial is not None and not self.min_replicas <= initial <= self.max_replicas:
            raise InvalidArgument("initial_replicas", f"must be between min_replicas ({self.min_replicas}) and "
                                  f"max_replicas ({self.max_replicas}), got {initial}")
        if self.generation_log not in (0, 1):
            raise InvalidArgument("generation_log", f"must be 1 (record generations) or 0 (do not), got {self.generation_log}")
        if self.max_request_seconds <= 0:
            raise InvalidArgument("max_request_seconds", f"must be > 0, got {self.max_request_seconds}")
        if self.target_ongoing_requests <= 0:
            raise InvalidArgument("target_ongoing_requests", f"must be > 0, got {self.target_ongoing_requests}")

    def ray_actor_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.memory_gb:
            options["memory"] = int(self.memory_gb * 2**30)
        return options

    def autoscaling_config(self) -> dict[str, Any]:
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "initial_replicas": self.initial_replicas if self.initial_replicas is not None else self.min_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
            "metrics_interval_s": self.metrics_interval_s,
            "look_back_period_s": self.look_back_period_s,
        }

    def replace(self, changes: Mapping[str, Any], source: str) -> ServeSettings:
        return dataclasses.replace(self, **{k: _coerce(k, v, source) for k, v in changes.items()})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_TYPES = {f.name: f.type for f in fields(ServeSettings)}


def _coerce(key: str, value: Any, source: str) -> Any:
    if key not in _TYPES:
        raise InvalidArgument(source, f"unknown serving setting {key!r}; known: {', '.join(sorted(_TYPES))}")
    kind = str(_TYPES[key])
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        if "None" in kind:
            return None
        raise InvalidArgument(source, f"{key} needs a value")
    try:
        if kind.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        return float(value)
    except (TypeError, ValueError):
        raise InvalidArgument(source, f"{key} must be a {'whole ' if kind.startswith('int') else ''}number, got {value!r}") from None


def from_tags(tags: Iterable[str], base: ServeSettings | None = None, *, source: str = "tags") -> ServeSettings:
    """Apply ``serve.KEY=VALUE`` tags to ``base``; other tags are ignored."""
    changes: dict[str, str] = {}
    for tag in tags:
        if tag.startswith(TAG_PREFIX):
            key, sep, value = tag[len(TAG_PREFIX):].partition("=")
            if not sep:
                raise InvalidArgument(source, f"tag {tag!r} has no value; write serve.KEY=VALUE")
            changes[key] = value
    return (base or ServeSettings()).replace(changes, source)


@dataclass
class Overrides:
    """Per-model changes from a YAML file and the command line (``"*"`` applies to every model)."""

    models: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None = None, assignments: Iterable[str] = ()) -> Overrides:
        overrides = cls()
        if path is not None:
            import yaml

            data = yaml.safe_load(Path(path).read_text()) or {}
            if not isinstance(data, dict) or not set(data) <= {"models", "default"}:
                raise InvalidArgument(str(path), "expected a mapping with keys 'models' (NAME: {KEY: VALUE}) and/or 'default'")
            overrides.models["*"] = dict(data.get("default") or {})
            for name, values in (data.get("models") or {}).items():
                if not isinstance(values, dict):
                    raise InvalidArgument(str(path), f"models.{name} must map setting names to values")
                overrides.models[str(name)] = dict(values)
        for assignment in assignments:
            target, sep, value = assignment.partition("=")
            name, dot, key = target.rpartition(".")
            if not sep or not dot or not name or not key:
                raise InvalidArgument("--set", f"expected MODEL.KEY=VALUE (or *.KEY=VALUE), got {assignment!r}")
            overrides.models.setdefault(name, {})[key] = value
        return overrides

    def apply(self, name: str, settings: ServeSettings) -> ServeSettings:
        settings = settings.replace(self.models.get("*", {}), "overrides for every model")
        return settings.replace(self.models.get(name, {}), f"overrides of {name}")


def log_assignments(retention: timedelta | None, enabled: bool) -> tuple[str, ...]:
    """`genhub serve`'s --log-retention and --no-generation-log as ``--set`` assignments for every model."""
    given = {"log_retention_s": retention.total_seconds() if retention is not None else None,
             "generation_log": None if enabled else 0}
    return tuple(f"*.{key}={value}" for key, value in given.items() if value is not None)


def settings_for(hub: Any, name: str, overrides: Overrides | None = None) -> ServeSettings:
    """The serving settings of model ``name``: its latest version's tags, then the overrides."""
    settings = from_tags(hub.resolve(name).tags, source=f"tags of {name}")
    return overrides.apply(name, settings) if overrides is not None else settings


def fit_to_cpus(settings: dict[str, ServeSettings], cpus: float, reserved: float = 0.5) -> tuple[dict[str, ServeSettings], float]:
    """Shrink every model's ``num_cpus`` by one factor so that all their initial replicas fit in ``cpus``.

    For a local Ray instance only: a laptop serving every bundled model would otherwise leave most deployments
    pending (14 models at 1 CPU each on 2 CPUs). ``reserved`` is kept for the ingress. Returns the settings and
    the factor applied (1.0: they already fit). A cluster grows instead, so its settings are never shrunk.
    """
    need = sum(s.num_cpus * (s.initial_replicas if s.initial_replicas is not None else max(s.min_replicas, 1))
               for s in settings.values())
    room = max(cpus - reserved, 0.1)
    if need <= room:
        return settings, 1.0
    factor = room / need
    return {m: s.replace({"num_cpus": s.num_cpus * factor}, "local fit") for m, s in settings.items()}, factor
