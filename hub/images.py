"""Turning sample tensors into PNG bytes and grids."""

from __future__ import annotations

import io
import math
from pathlib import Path

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


def scatter(points: torch.Tensor, size: int = 512, extent: float | None = None) -> Image.Image:
    """A scatter plot of [N, 2] points, for the 2D mixture models."""
    pts = points.detach().float().cpu().numpy()
    extent = extent or float(np.abs(pts).max() * 1.1 + 1e-6)
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for x, y in pts:
        px, py = (x / extent + 1) * size / 2, (1 - y / extent) * size / 2
        draw.ellipse((px - 1.5, py - 1.5, px + 1.5, py + 1.5), fill=(30, 60, 200))
    return image


def save_samples(samples: torch.Tensor, path: Path | str, columns: int | None = None) -> Path:
    """Write images as a PNG grid, or 2D points as a scatter plot."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = scatter(samples) if samples.dim() == 2 else grid(samples, columns)
    picture.save(path)
    return path
