"""Turning sample tensors into PNG bytes and grids."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> [N, H, W, C] uint8."""
    if images.dim() != 4:
        raise ValueError(f"expected images [N, C, H, W], got shape {tuple(images.shape)}")
    array = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return array.permute(0, 2, 3, 1).numpy()


def _pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def png_bytes(image: np.ndarray, scale: int = 1) -> bytes:
    """One [H, W, C] uint8 image as PNG, optionally enlarged (nearest) by ``scale``."""
    pil = _pil(image)
    if scale > 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


def grid(images: torch.Tensor, columns: int | None = None, scale: int | None = None, pad: int = 1) -> Image.Image:
    """A grid of [N, C, H, W] images; small images are enlarged so a person can see them."""
    arrays = to_uint8(images)
    n, h, w, c = arrays.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    scale = scale or max(1, 64 // max(h, w))
    canvas = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 40, dtype=np.uint8)
    for i, image in enumerate(arrays):
        r, col = divmod(i, columns)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = image
    pil = _pil(canvas)
    return pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)


# What a 2D model is drawn with by default: enough points that a missing or thin mode shows.
POINT_SAMPLES = 2000
Mixture = tuple[Sequence[Sequence[float]], float]  # (mode centres [K, 2], std of each mode)


def scatter(points: torch.Tensor, size: int = 512, extent: float | None = None,
            mixture: Mixture | None = None) -> Image.Image:
    """A scatter plot of [N, 2] points; with ``mixture``, each true mode's 3-std circle (the high-quality zone, red)."""
    pts = points.detach().float().cpu().numpy()
    centres = np.asarray(mixture[0], dtype=np.float64) if mixture is not None else np.zeros((0, 2))
    if len(centres):  # frame the true modes; the rare far outlier falls off the picture rather than shrink it
        reach = float(np.abs(centres).max()) * 1.35
    else:
        reach = float(np.abs(pts).max()) * 1.1 if len(pts) else 1.0
    extent = extent or reach + 1e-6
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)

    def pixel(x: float, y: float) -> tuple[float, float]:
        return (x / extent + 1) * size / 2, (1 - y / extent) * size / 2

    dot = 1.5 if len(pts) <= 200 else 1.0
    for x, y in pts:
        px, py = pixel(x, y)
        draw.ellipse((px - dot, py - dot, px + dot, py + dot), fill=(30, 60, 200))
    if mixture is not None:
        radius = max(2.0, 3.0 * float(mixture[1]) / extent * size / 2)
        for x, y in centres:
            px, py = pixel(float(x), float(y))
            draw.ellipse((px - radius, py - radius, px + radius, py + radius), outline=(220, 30, 30))
    return image


def save_samples(samples: torch.Tensor, path: Path | str, columns: int | None = None,
                 mixture: Mixture | None = None) -> Path:
    """Write images as a PNG grid, or 2D points as a scatter plot (over the true modes when ``mixture`` is given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = scatter(samples, mixture=mixture) if samples.dim() == 2 else grid(samples, columns)
    picture.save(path)
    return path
