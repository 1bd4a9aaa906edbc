"""Reading figures back: the latest measurement per metric, grouped by the sampling settings they were taken with.

A version may be evaluated several times (other samplers, other steps, other machines). Quality and speed
figures of one evaluation share (sampler, steps); latency figures also depend on the hardware.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.registry.records import MetricRecord

Settings = tuple[str | None, int | None]  # (sampler, steps)
SPEED_PREFIXES = ("latency_", "images_per_s")


def is_speed(name: str) -> bool:
    return name.startswith(SPEED_PREFIXES)


@dataclass
class Figures:
    """The newest figure of each metric name measured with one (sampler, steps)."""

    sampler: str | None
    steps: int | None
    values: dict[str, MetricRecord] = field(default_factory=dict)

    def get(self, name: str) -> float | None:
        record = self.values.get(name)
        return record.value if record is not None else None


def by_settings(metrics: list[MetricRecord], hardware: str | None = None) -> dict[Settings, Figures]:
    """Newest figure per (sampler, steps) and name; speed figures only from ``hardware`` when it is given."""
    groups: dict[Settings, Figures] = {}
    for m in sorted(metrics, key=lambda r: r.id):  # later rows replace earlier ones
        if hardware is not None and is_speed(m.name) and m.hardware != hardware:
            continue
        key = (m.sampler, m.steps)
        groups.setdefault(key, Figures(m.sampler, m.steps)).values[m.name] = m
    return groups


def latest(metrics: list[MetricRecord]) -> dict[str, MetricRecord]:
    """Newest figure per metric name, whatever the settings (what a summary line shows)."""
    newest: dict[str, MetricRecord] = {}
    for m in sorted(metrics, key=lambda r: r.id):
        newest[m.name] = m
    return newest


def hardware_seen(metrics: list[MetricRecord]) -> list[str]:
    """Machines a version's speed was measured on, oldest first."""
    return list(dict.fromkeys(m.hardware for m in sorted(metrics, key=lambda r: r.id) if is_speed(m.name) and m.hardware))


QUALITY_LABELS = {
    "modes_covered": "modes covered",
    "high_quality_share": "high-quality share",
    "mode_kl": "mode KL (nats)",
    "fd": "Fréchet distance to held-out data (classifier features)",
    "precision": "precision (k=3, classifier features)",
    "recall": "recall (k=3, classifier features)",
    "fd_random": "Fréchet distance to held-out data (random features)",
    "precision_random": "precision (k=3, random features)",
    "recall_random": "recall (k=3, random features)",
    "class_agreement": "class agreement",
    "nn_ratio": "nearest-training distance / held-out's (memorisation: ~1 fine, near 0 copies)",
    "copy_share": "share nearer a training image than 95% of held-out images are",
}


def _spread(record: MetricRecord | None) -> str:
    """' ± 1.2' (half the 95% interval over the sample sets) when the figure has one."""
    ci = record.details.get("ci95") if record is not None else None
    return f" ± {_fmt((ci[1] - ci[0]) / 2)}" if ci and ci[1] > ci[0] else ""


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.3g}"


def card_section(metrics: list[MetricRecord]) -> list[str]:
    """Markdown lines: the newest quality figures beside their floor, then speed; [] when nothing was measured."""
    newest = latest(metrics)
    quality = [n for n in QUALITY_LABELS if n in newest or f"{n}_floor" in newest]
    speed = [n for n in newest if is_speed(n)]
    if not quality and not speed:
        return []
    lines = ["", "## Quality and speed", ""]
    if quality:
        first = newest.get(quality[0]) or newest[f"{quality[0]}_floor"]
        lines += [f"Measured by `genhub eval` on {first.num_samples} samples against `{first.data}`"
                  f" ({first.sampler or 'default'} sampler, {first.steps or 'default'} steps), the mean of "
                  f"{first.details.get('repeats', 1)} sample sets ± half the 95% interval; the floor is real data "
                  "at the same N, measured the same way.", ""]
        digest = first.details.get("classifier_sha256")
        if digest:
            lines += [f"Image features: classifier `{first.details.get('classifier')}` sha256 `{digest}`.", ""]
        lines += ["| figure | model | floor (real data, same N) |", "|---|---|---|"]
        for name in quality:
            model, floor = newest.get(name), newest.get(f"{name}_floor")
            lines.append(f"| {QUALITY_LABELS[name]} | {_fmt(model.value if model else None)}{_spread(model)} | "
                         f"{_fmt(floor.value if floor else None)}{_spread(floor)} |")
    if speed:
        b1, bmax = newest.get("latency_p50_ms_batch1"), newest.get("latency_p50_ms_batchmax")

        def value(name: str) -> float | None:  # a figure recorded without its companions shows "-" for them
            record = newest.get(name)
            return record.value if record is not None else None

        lines.append("")
        if b1 is not None:
            lines.append(f"- batch 1: p50 {b1.value:.1f} ms, p99 {_fmt(value('latency_p99_ms_batch1'))} ms, "
                         f"{_fmt(value('images_per_s_batch1'))} images/s ({b1.hardware})")
        if bmax is not None:
            lines.append(f"- batch {bmax.details.get('batch')}: p50 {bmax.value:.1f} ms, "
                         f"p99 {_fmt(value('latency_p99_ms_batchmax'))} ms, "
                         f"{_fmt(value('images_per_s_batchmax'))} images/s ({bmax.hardware})")
    return lines
