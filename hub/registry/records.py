"""What the registry hands out: frozen, plain dataclasses, never ORM objects.

Records are detached snapshots: safe to keep after the transaction, to pass
between threads and to turn into JSON or protobuf messages. Times are UTC.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class PluginRecord:
    name: str
    version: str
    status: str  # "loaded" | "failed" | "disabled"
    error: str | None
    updated_at: datetime


@dataclass(frozen=True)
class ModelRecord:
    id: int
    name: str
    family: str
    plugin: str
    description: str
    created_at: datetime
    latest_version: int | None  # the version ``latest`` points at; None before the first version
    num_versions: int


@dataclass(frozen=True)
class VersionRecord:
    id: int
    model: str  # model name
    family: str
    version: int
    config: dict[str, Any] = field(hash=False)
    artifact_digest: str
    dataset: str
    parent: str | None  # "name:version" this one was derived from
    parent_version_id: int | None
    tags: tuple[str, ...]
    card: str | None  # markdown
    created_at: datetime
    aliases: tuple[str, ...]  # sorted, e.g. ("latest", "prod")

    @property
    def ref(self) -> str:
        """The exact reference of this version, ``name:version``."""
        return f"{self.model}:{self.version}"

    @cached_property
    def config_json(self) -> str:
        """``config`` as canonical JSON (sorted keys), encoded once per record: servers key loaded models by it
        (hub.core.model_key) on every request, and their resolvers hand out the same record while it is cached."""
        return json.dumps(self.config, sort_keys=True)


@dataclass(frozen=True)
class TrainingRunRecord:
    id: int
    version_id: int
    ref: str  # "name:version"
    command: str
    seed: int | None
    steps: int | None
    wall_time_s: float | None
    losses: tuple[float, ...]
    hardware: str | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class MetricRecord:
    id: int
    version_id: int
    ref: str  # "name:version"
    name: str
    value: float
    data: str  # dataset and split the metric was measured on
    num_samples: int | None
    hardware: str | None
    sampler: str | None
    steps: int | None
    details: dict[str, Any] = field(hash=False)
    created_at: datetime


@dataclass(frozen=True)
class GenerationRecord:
    id: int
    version_id: int | None
    ref: str | None  # "name:version"; None if the request failed before resolving one
    artifact_digest: str | None  # the weights that served it
    seed: int | None
    params: dict[str, Any] = field(hash=False)
    num_samples: int
    duration_s: float
    status: str
    error: str | None
    created_at: datetime
