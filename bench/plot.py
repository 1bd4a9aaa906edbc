"""Quality against speed as a PNG, drawn with Pillow (no plotting library needed): one panel per dataset.

Each panel: x = images per second (log scale), y = a quality figure; one labelled point per model and sampling
setting; the real-data floor as a dashed horizontal line. Used by bench/tradeoffs.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

PANEL_W, PANEL_H = 620, 440
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 70, 20, 40, 50
COLOURS = {"ddpm": (40, 90, 200), "ddgan": (200, 60, 40), "distill": (230, 140, 20), "stylegan": (40, 150, 60),
           "gan": (120, 120, 120), "ldm": (140, 60, 170)}


@dataclass(frozen=True)
class Point:
    label: str
    family: str
    x: float  # images/s, > 0
    y: float  # the quality figure


@dataclass(frozen=True)
class Panel:
    title: str
    y_label: str
    points: list[Point]
    floor: float | None = None  # real data at the same N
    floor_label: str = "real data (same N)"
    higher_is_better: bool = True


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _dashed(draw: ImageDraw.ImageDraw, x0: float, x1: float, y: float, colour: tuple[int, int, int]) -> None:
    x = x0
    while x < x1:
        draw.line((x, y, min(x + 8, x1), y), fill=colour, width=2)
        x += 14


def _draw_panel(panel: Panel) -> Image.Image:
    image = Image.new("RGB", (PANEL_W, PANEL_H), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = _font()
    points = [p for p in panel.points if p.x > 0 and math.isfinite(p.y)]
    xs = [math.log10(p.x) for p in points] or [0.0, 1.0]
    ys = [p.y for p in points] + ([panel.floor] if panel.floor is not None else [])
    x_lo, x_hi = math.floor(min(xs) - 0.2), math.ceil(max(xs) + 0.6)  # room for the rightmost labels
    y_lo, y_hi = min(ys + [0.0]), max(ys) * 1.08 if ys else 1.0
    if y_hi <= y_lo:
        y_hi = y_lo + 1.0
    left, right, top, bottom = MARGIN_L, PANEL_W - MARGIN_R, MARGIN_T, PANEL_H - MARGIN_B

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (left + (math.log10(x) - x_lo) / (x_hi - x_lo) * (right - left),
                bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top))

    draw.rectangle((left, top, right, bottom), outline=(0, 0, 0))
    for decade in range(x_lo, x_hi + 1):  # log-scale ticks at powers of ten
        px = left + (decade - x_lo) / (x_hi - x_lo) * (right - left)
        draw.line((px, bottom, px, bottom + 5), fill=(0, 0, 0))
        draw.line((px, top, px, bottom), fill=(235, 235, 235))
        draw.text((px - 12, bottom + 8), f"1e{decade}", fill=(0, 0, 0), font=font)
    for i in range(6):
        value = y_lo + i * (y_hi - y_lo) / 5
        py = bottom - i * (bottom - top) / 5
        draw.line((left - 5, py, left, py), fill=(0, 0, 0))
        draw.text((5, py - 6), f"{value:.3g}", fill=(0, 0, 0), font=font)
    draw.text((left, 10), panel.title, fill=(0, 0, 0), font=font)
    draw.text(((left + right) / 2 - 60, PANEL_H - 20), "images/s (log scale)", fill=(0, 0, 0), font=font)
    draw.text((left + 5, top + 5), panel.y_label + (" (higher is better)" if panel.higher_is_better
                                                    else " (lower is better)"), fill=(80, 80, 80), font=font)
    if panel.floor is not None:
        _, py = to_px(10 ** x_lo, panel.floor)
        _dashed(draw, left, right, py, (0, 0, 0))
        draw.text((right - 130, py - 14), f"{panel.floor_label} {panel.floor:.3g}", fill=(0, 0, 0), font=font)
    for point in points:
        px, py = to_px(point.x, point.y)
        colour = COLOURS.get(point.family, (0, 0, 0))
        draw.ellipse((px - 5, py - 5, px + 5, py + 5), fill=colour)
        draw.text((px + 7, py - 6), point.label, fill=colour, font=font)
    return image


def save_plot(panels: list[Panel], path: Path) -> Path:
    """The panels side by side in one PNG."""
    if not panels:
        raise ValueError("nothing to plot: no panels")
    canvas = Image.new("RGB", (PANEL_W * len(panels), PANEL_H), (255, 255, 255))
    for i, panel in enumerate(panels):
        canvas.paste(_draw_panel(panel), (i * PANEL_W, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
