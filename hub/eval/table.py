"""The models table: quality against speed for a list of versions, as markdown (README, bench/model_table.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.eval.summary import by_settings
from hub.registry.records import MetricRecord, VersionRecord

if TYPE_CHECKING:
    from hub.core import Hub

HEADER = ("| model | family | dataset | sampling | quality | floor (real data, same N) | images/s batch 1 | "
          "images/s batch max | p50 / p99 ms batch 1 |")


def _get(figures: dict[str, MetricRecord], name: str) -> float | None:
    record = figures.get(name)
    return record.value if record is not None else None


def quality_text(figures: dict[str, MetricRecord], suffix: str = "") -> str:
    """'FD 23.1, P 0.81, R 0.62' for images, '25/25 modes, HQ 0.70' for points, '-' if unmeasured."""
    fd = _get(figures, "fd" + suffix)
    if fd is not None:
        parts = [f"FD {fd:.1f}"]
        for label, name in (("P", "precision"), ("R", "recall"), ("class", "class_agreement")):
            value = _get(figures, name + suffix)
            if value is not None:
                parts.append(f"{label} {value:.2f}")
        return ", ".join(parts)
    modes = figures.get("modes_covered" + suffix)
    if modes is not None:
        share = _get(figures, "high_quality_share" + suffix)
        return f"{modes.value:.0f}/{modes.details.get('num_modes', '?')} modes, HQ {share if share is not None else 0:.2f}"
    return "-"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table_row(version: VersionRecord, figures: dict[str, MetricRecord], floor: dict[str, MetricRecord]) -> str:
    """One row: a version's figures measured with one (sampler, steps), beside the floor."""
    quality = next((figures[n] for n in ("fd", "modes_covered") if n in figures), None)
    anchor = quality or next(iter(figures.values()), None)
    if anchor is not None:
        sampling = f"{anchor.sampler or version.family}, {anchor.steps or '-'} steps"
    else:
        sampling = "-"
    batch_max = figures.get("images_per_s_batchmax")
    max_text = _num(_get(figures, "images_per_s_batchmax")) + (f" (b{batch_max.details.get('batch')})" if batch_max else "")
    latency = f"{_num(_get(figures, 'latency_p50_ms_batch1'))} / {_num(_get(figures, 'latency_p99_ms_batch1'))}"
    return (f"| {version.ref} | {version.family} | {version.dataset} | {sampling} | {quality_text(figures)} | "
            f"{quality_text(floor, '_floor')} | {_num(_get(figures, 'images_per_s_batch1'))} | {max_text} | {latency} |")


def version_rows(version: VersionRecord, metrics: list[MetricRecord]) -> list[str]:
    """One row per sampling setting the version was measured with (e.g. DDPM at 1000 and at 50 steps)."""
    floor = {m.name: m for m in sorted(metrics, key=lambda r: r.id) if m.name.endswith("_floor")}
    rows = []
    for group in by_settings([m for m in metrics if not m.name.endswith("_floor")]).values():
        rows.append(table_row(version, group.values, floor))
    return rows or [table_row(version, {}, floor)]


def models_table(hub: Hub, refs: list[str]) -> str:
    """Markdown: one row per version, then where and how the figures were measured."""
    if not refs:
        return "No bundled models are registered yet: plugins ship them under `pretrained/`."
    rows = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    hardware: dict[str, None] = {}
    for ref in refs:
        version = hub.resolve(ref)
        metrics = hub.registry.metrics(version.ref)
        rows.extend(version_rows(version, metrics))
        hardware.update({m.hardware: None for m in metrics if m.hardware and m.name.startswith("latency_")})
    lines = rows + [
        "",
        "Quality: Fréchet distance (FD, lower is better), precision (P) and recall (R) against the held-out test split, "
        "in the features of a classifier trained on the same dataset (`hub/eval/weights/`), each the mean of 3 sample "
        "sets; 2D mixtures: modes covered and share of high-quality samples (within 3 std of a mode; a mode counts with "
        "at least a fifth of its expected samples). The floor is real data at the same N measured the same way (see "
        "\"How quality is measured\"). Speed measured on " + ("; ".join(hardware) or "-") + ".",
    ]
    return "\n".join(lines)
