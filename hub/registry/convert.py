"""Validation and conversion between API values, stored columns and records.

Kept apart from ``registry.py`` so the Registry reads as queries only.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from hub.errors import InvalidArgument
from hub.registry.orm import Generation, TrainingRun
from hub.registry.records import GenerationRecord, TrainingRunRecord

TRAINING_RUN_KEYS = ("command", "seed", "steps", "wall_time_s", "losses", "hardware", "started_at", "finished_at")
METRIC_KEYS = ("name", "value", "data", "num_samples", "hardware", "sampler", "steps", "details")


def utc(value: datetime) -> datetime:
    """Stored naive UTC -> aware UTC."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def opt_utc(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


def opt_int(field_name: str, value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise InvalidArgument(field_name, f"expected an integer or None, got {value!r}")


def to_naive_utc(field_name: str, value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidArgument(
                field_name, f"{value!r} is not an ISO 8601 time (e.g. 2024-05-01T12:00:00+00:00)"
            ) from None
    if not isinstance(value, datetime):
        raise InvalidArgument(field_name, f"expected a datetime or ISO 8601 string, got {type(value).__name__}")
    return value if value.tzinfo is None else value.astimezone(timezone.utc).replace(tzinfo=None)


def dumps(field_name: str, value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(
            field_name, f"is not JSON-serialisable ({exc}); use str, int, float, bool, list and dict values"
        ) from None


def check_tags(tags: Sequence[str]) -> list[str]:
    if isinstance(tags, str):
        raise InvalidArgument("tags", f"expected a list of tags, got the string {tags!r}; wrap it: [{tags!r}]")
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            raise InvalidArgument("tags", f"{tag!r} is not a non-empty string")
        if tag not in out:
            out.append(tag)
    return out


def unknown_keys(field_name: str, given: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise InvalidArgument(field_name, f"unknown key(s) {unknown}; known keys: {list(known)}")


def training_run_columns(run: dict[str, Any]) -> dict[str, Any]:
    unknown_keys("training_run", run, TRAINING_RUN_KEYS)
    try:
        losses = [float(x) for x in run.get("losses") or []]
        wall = run.get("wall_time_s")
        wall_time_s = None if wall is None else float(wall)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument("training_run", f"losses and wall_time_s must be numbers ({exc})") from None
    return {
        "command": str(run.get("command") or ""),
        "seed": opt_int("training_run.seed", run.get("seed")),
        "steps": opt_int("training_run.steps", run.get("steps")),
        "wall_time_s": wall_time_s,
        "losses": json.dumps(losses),
        "hardware": run.get("hardware"),
        "started_at": to_naive_utc("training_run.started_at", run.get("started_at")),
        "finished_at": to_naive_utc("training_run.finished_at", run.get("finished_at")),
    }


def metric_columns(metric: dict[str, Any], default_data: str | None) -> dict[str, Any]:
    unknown_keys("metrics", metric, METRIC_KEYS)
    name, value, data = metric.get("name"), metric.get("value"), metric.get("data", default_data)
    if not isinstance(name, str) or not name:
        raise InvalidArgument("metrics", f"metric {metric!r} has no name; give each metric a 'name'")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgument("value", f"metric {name!r} has value {value!r}; record a finite number")
    if not isinstance(data, str) or not data:
        raise InvalidArgument("data", f"metric {name!r} does not say what data it was measured on (e.g. 'digits:test')")
    details = metric.get("details") or {}
    if not isinstance(details, dict):
        raise InvalidArgument("details", f"metric {name!r} details must be a dict, got {type(details).__name__}")
    return {
        "name": name,
        "value": float(value),
        "data": data,
        "num_samples": opt_int("num_samples", metric.get("num_samples")),
        "hardware": metric.get("hardware"),
        "sampler": metric.get("sampler"),
        "steps": opt_int("steps", metric.get("steps")),
        "details": dumps("details", details),
    }


def training_record(r: TrainingRun, ref: str) -> TrainingRunRecord:
    return TrainingRunRecord(
        r.id, r.version_id, ref, r.command, r.seed, r.steps, r.wall_time_s, tuple(json.loads(r.losses)),
        r.hardware, opt_utc(r.started_at), opt_utc(r.finished_at),
    )  # fmt: skip


def generation_record(r: Generation, ref: str | None) -> GenerationRecord:
    return GenerationRecord(
        r.id, r.version_id, ref, r.artifact_digest, r.seed, json.loads(r.params), r.num_samples, r.duration_s,
        r.status, r.error, utc(r.created_at),
    )  # fmt: skip


def ranges(numbers: Iterable[int]) -> str:
    """[1, 2, 3, 5] -> "1-3, 5"."""
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


MAX_TOKEN_CHARS = 1024  # a model name (200 characters) encodes to about 300


def encode_token(after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode().rstrip("=")


def decode_token(token: str) -> str | None:
    if not token:
        return None
    if len(token) <= MAX_TOKEN_CHARS:
        try:
            after = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["after"]
            if isinstance(after, str):
                return after
        except (ValueError, KeyError, TypeError, IndexError, RecursionError):  # RecursionError: nested brackets
            pass
    shown = repr(token) if len(token) <= 60 else repr(token[:60]) + f"... ({len(token)} characters)"
    raise InvalidArgument("page_token", f"{shown} is not a token list_models returned; pass '' for the first page")
