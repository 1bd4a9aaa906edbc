"""Registry records <-> ``hub.v1`` registry messages.

Request parsing and its limits live in ``hub.server.requests`` and the wire codecs (tensors and PNGs, family
parameters, output formats, timeout metadata) in ``hub.codecs``, which the client imports too; they are re-exported
here for servicers that call them as ``convert.*``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterable

from google.protobuf.timestamp_pb2 import Timestamp

from hub.codecs import (  # noqa: F401  (re-exported for callers of convert.*)
    FORMAT_PNG,
    FORMAT_TENSOR,
    PREVIEW_MAX_SIDE,
    TIMEOUT_METADATA,
    clip,
    image_messages,
    param_message,
    parse_timeout,
    preview_messages,
    resolve_format,
    tensor_from_message,
    tensor_message,
    timeout_metadata,
)
from hub.server.requests import (  # noqa: F401  (re-exported for callers of convert.*)
    DEFAULT_PAGE_SIZE,
    MAX_ALIAS_CHARS,
    MAX_ETA,
    MAX_GUIDANCE,
    MAX_NAME_CHARS,
    MAX_NUM_SAMPLES,
    MAX_PAGE_SIZE,
    MAX_PAGE_TOKEN_CHARS,
    MAX_PARAMS,
    MAX_PARAM_KEY_CHARS,
    MAX_PARAM_STRING_CHARS,
    MAX_PREVIEW_EVERY,
    MAX_PROMPT_CHARS,
    MAX_REF_CHARS,
    MAX_SEED,
    MAX_STEPS,
    MAX_TASK_CHARS,
    MAX_TRUNCATION,
    ParsedRequest,
    SAMPLER_RE,
    TaskSpec,
    WIRE_FIELDS,
    annotate_response,
    check_length,
    check_supported,
    parse_generate,
    parse_params,
    parse_task,
)
from hub.v1 import registry_pb2, types_pb2


def timestamp(value: datetime | None) -> Timestamp | None:
    """Registry times are naive UTC."""
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value)
    return stamp


PLUGIN_STATUS = {
    "loaded": registry_pb2.PLUGIN_STATUS_LOADED,
    "failed": registry_pb2.PLUGIN_STATUS_FAILED,
    "disabled": registry_pb2.PLUGIN_STATUS_DISABLED,
}


def plugin_message(info: Any, owners: dict[tuple[str, str], str]) -> registry_pb2.Plugin:
    """A PluginInfo plus what it contributes (from Contributions.owners)."""
    owned: dict[str, list[str]] = {}
    for (kind, name), plugin in owners.items():
        if plugin == info.name:
            owned.setdefault(kind, []).append(name)
    return registry_pb2.Plugin(
        name=info.name,
        version=info.version or "",
        status=PLUGIN_STATUS.get(info.status, registry_pb2.PLUGIN_STATUS_UNSPECIFIED),
        error=info.error or "",
        distribution=info.distribution or "",
        model_families=sorted(owned.get("model family", [])),
        samplers=sorted(owned.get("sampler", [])),
        datasets=sorted(owned.get("dataset", [])),
        pretrained_models=sorted(owned.get("pretrained model", [])),
    )


def model_message(record: Any, aliases: dict[str, int]) -> registry_pb2.Model:
    """A ModelRecord; ``aliases`` maps alias -> version number."""
    return registry_pb2.Model(
        name=record.name,
        family=record.family,
        plugin=record.plugin,
        description=record.description or "",
        create_time=timestamp(record.created_at),
        latest_version=record.latest_version or 0,
        version_count=record.num_versions,
        aliases=aliases,
    )


def version_ref(version: Any) -> types_pb2.ModelVersionRef:
    return types_pb2.ModelVersionRef(
        name=version.model, version=version.version, digest=version.artifact_digest, family=version.family
    )


def metric_message(m: Any) -> registry_pb2.Metric:
    """A MetricRecord."""
    return registry_pb2.Metric(
        name=m.name,
        value=m.value,
        data=m.data or "",
        num_samples=m.num_samples or 0,
        sampler=m.sampler or "",
        steps=m.steps or 0,
        hardware=m.hardware or "",
        details_json=json.dumps(m.details or {}, sort_keys=True, default=str),
        create_time=timestamp(m.created_at),
    )


def version_message(version: Any, metrics: Iterable[Any] = (), runs: Iterable[Any] = (), card: str | None = None) -> registry_pb2.ModelVersion:
    """A VersionRecord with its MetricRecords and TrainingRunRecords; ``card`` overrides the version's own."""
    return registry_pb2.ModelVersion(
        ref=version_ref(version),
        dataset=version.dataset,
        parent=version.parent or "",
        tags=list(version.tags),
        aliases=list(version.aliases),
        create_time=timestamp(version.created_at),
        config_json=json.dumps(version.config, sort_keys=True),
        card=card if card is not None else version.card or "",
        metrics=[metric_message(m) for m in metrics],
        training_runs=[
            registry_pb2.TrainingRun(
                command=r.command or "",
                seed=r.seed or 0,
                steps=r.steps or 0,
                wall_time_seconds=r.wall_time_s or 0.0,
                hardware=r.hardware or "",
                final_loss=r.losses[-1] if r.losses else None,
            )
            for r in runs
        ],
    )
