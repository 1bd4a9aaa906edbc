"""Differentiable augmentation (after Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training"): the same random transforms are applied to real and generated images before the discriminator,
and gradients flow through them to the generator, so D cannot memorise a small training set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hub.errors import InvalidArgument

AUGMENTATIONS = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """"color,translation" -> ("color", "translation"); "" -> no augmentation."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    bad = [n for n in names if n not in AUGMENTATIONS]
    if bad:
        raise InvalidArgument("augment", f"unknown augmentation(s) {bad}; use a comma-separated subset of {list(AUGMENTATIONS)}")
    return names


def color(x: torch.Tensor) -> torch.Tensor:
    """Random brightness, saturation (colour images) and contrast, per sample. x: [N, C, H, W] in about [-1, 1]."""
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, device=x.device) - 0.5)
    if x.shape[1] > 1:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size (at least one pixel), filling with the edge pixels."""
    n, _, h, w = x.shape
    sh, sw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    dy = torch.randint(-sh, sh + 1, (n, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1), device=x.device)
    padded = F.pad(x, (sw, sw, sh, sh), mode="replicate")  # [N, C, H + 2sh, W + 2sw]
    rows = torch.arange(h, device=x.device)[None] + sh + dy  # [N, H]
    cols = torch.arange(w, device=x.device)[None] + sw + dx  # [N, W]
    idx = torch.arange(n, device=x.device)[:, None, None]
    return padded[idx, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # [N, H, W, C] -> [N, C, H, W]


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero (mid-grey) a random square of ``ratio`` x the image size in each image."""
    n, _, h, w = x.shape
    ch, cw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    top = torch.randint(0, h - ch + 1, (n, 1, 1), device=x.device)
    left = torch.randint(0, w - cw + 1, (n, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)  # [N, H, W]
    return x * (~inside)[:, None].to(x.dtype)


def diff_augment(x: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    """Apply ``policy``'s transforms in order to images x [N, C, H, W]; points and empty policies pass through."""
    if not policy or x.dim() != 4:
        return x
    for name in policy:
        x = {"color": color, "translation": translation, "cutout": cutout}[name](x)
    return x
