"""StyleGAN2-style generator and discriminator, for images and for 2D points.

Generator: mapping network (z -> w), a learned constant input, modulated convolutions with per-layer noise,
and skip connections that sum a toRGB output from every resolution. Discriminator: residual, equalised
learning rate, minibatch standard deviation before the last layers. The point variants keep the same parts
on a 1x1 "image": modulated 1x1 convolutions are modulated fully connected layers.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hub.layers import encoded_width, fourier_encode

from genhub_stylegan.layers import (
    EqualConv2d,
    EqualLinear,
    MappingNetwork,
    SynthesisLayer,
    ToOutput,
    minibatch_stddev,
    pack_samples,
)

NOISE_MODES = ("const", "random", "none")
# draw(C, H, W) -> [N, C, H, W] noise, row i from sample i's own generator (a NoiseSource.randn)
NoiseDraw = Callable[[int, int, int], torch.Tensor]


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at ``resolution``: fewer as the resolution grows, as in the paper."""
    return max(1, min(channel_max, channel_base // resolution))


class ImageSynthesis(nn.Module):
    """ws [N, num_ws, w_dim] -> images [N, C, R, R]: const 4x4, then two layers per doubling, skip toRGB."""

    def __init__(self, resolution: int, img_channels: int, w_dim: int, channel_base: int, channel_max: int) -> None:
        super().__init__()
        if resolution < 4 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of 2 >= 4, got {resolution}")
        ch4 = channels_at(4, channel_base, channel_max)
        self.const = nn.Parameter(torch.randn(ch4, 4, 4))
        self.layers = nn.ModuleList([SynthesisLayer(ch4, ch4, w_dim, 4)])
        self.to_rgb = nn.ModuleList([ToOutput(ch4, img_channels, w_dim)])
        self.rgb_after = [0]  # index of the layer each toRGB follows
        res, ch = 8, ch4
        while res <= resolution:
            out = channels_at(res, channel_base, channel_max)
            self.layers.append(SynthesisLayer(ch, out, w_dim, res, upsample=True))
            self.layers.append(SynthesisLayer(out, out, w_dim, res))
            self.to_rgb.append(ToOutput(out, img_channels, w_dim))
            self.rgb_after.append(len(self.layers) - 1)
            res, ch = res * 2, out
        self.num_ws = len(self.layers) + 1  # toRGB after layer i uses w[i + 1]

    def forward(self, ws: torch.Tensor, noise: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        n = ws.shape[0]
        noise = noise if noise is not None else [None] * len(self.layers)
        x = self.const[None].expand(n, -1, -1, -1)  # [N, C4, 4, 4]
        img: torch.Tensor | None = None
        rgb_index = 0
        for i, layer in enumerate(self.layers):
            x = layer(x, ws[:, i], noise[i])
            if rgb_index < len(self.rgb_after) and self.rgb_after[rgb_index] == i:
                y = self.to_rgb[rgb_index](x, ws[:, i + 1])
                img = y if img is None else F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False) + y
                rgb_index += 1
        assert img is not None
        return img  # [N, C, R, R]


class PointSynthesis(nn.Module):
    """ws [N, num_ws, w_dim] -> points [N, D]: a const vector through modulated FC layers, skip toXY summed."""

    def __init__(self, dim: int, w_dim: int, width: int, num_layers: int) -> None:
        super().__init__()
        self.const = nn.Parameter(torch.randn(width, 1, 1))
        self.layers = nn.ModuleList(SynthesisLayer(width, width, w_dim, 1, kernel=1) for _ in range(num_layers))
        self.to_xy = nn.ModuleList(ToOutput(width, dim, w_dim) for _ in range(num_layers))
        self.num_ws = num_layers + 1

    def forward(self, ws: torch.Tensor, noise: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        n = ws.shape[0]
        noise = noise if noise is not None else [None] * len(self.layers)
        x = self.const[None].expand(n, -1, -1, -1)  # [N, width, 1, 1]
        out = 0.0
        for i, (layer, to_xy) in enumerate(zip(self.layers, self.to_xy)):
            x = layer(x, ws[:, i], noise[i])
            out = out + to_xy(x, ws[:, i + 1])
        return out.flatten(1)  # type: ignore[union-attr]  # [N, D]


class StyleGenerator(nn.Module):
    """Mapping + synthesis. ``forward`` is the training path; sampling composes ``mapping`` and ``synthesis``."""

    def __init__(self, mapping: MappingNetwork, synthesis: ImageSynthesis | PointSynthesis) -> None:
        super().__init__()
        self.mapping = mapping
        self.synthesis = synthesis

    @property
    def num_ws(self) -> int:
        return self.synthesis.num_ws

    def ws(self, z: torch.Tensor, *, track_w_avg: bool = False) -> torch.Tensor:
        """z [N, z_dim] -> ws [N, num_ws, w_dim], the same w at every layer."""
        return self.mapping(z, track_w_avg=track_w_avg)[:, None].expand(-1, self.num_ws, -1)

    def forward(self, z: torch.Tensor, z_mix: torch.Tensor | None = None, mix_layer: int | None = None,
                track_w_avg: bool = False) -> torch.Tensor:
        # z, z_mix: [N, z_dim]. Style-mixing regularisation: layers >= mix_layer take their w from z_mix.
        ws = self.ws(z, track_w_avg=track_w_avg)
        if z_mix is not None and mix_layer is not None:
            ws = torch.cat([ws[:, :mix_layer], self.ws(z_mix)[:, mix_layer:]], dim=1)
        return self.synthesis(ws)

    def noise_inputs(self, mode: str, draw: NoiseDraw | None = None) -> list[torch.Tensor | None]:
        """Noise per synthesis layer for sampling: the stored maps ("const"), zeros ("none") or ``draw``'s ("random")."""
        if mode not in NOISE_MODES:
            raise ValueError(f"noise mode {mode!r} is not one of {list(NOISE_MODES)}")
        out: list[torch.Tensor | None] = []
        for layer in self.synthesis.layers:
            const = layer.noise_const  # [1, 1, H, W]
            if mode == "const":
                out.append(const)
            elif mode == "none":
                out.append(torch.zeros_like(const))
            else:
                assert draw is not None, "noise mode 'random' needs a noise draw"
                out.append(draw(1, const.shape[2], const.shape[3]))
        return out



class ImageDiscriminator(nn.Module):
    """Residual discriminator: fromRGB, (conv, conv, downsample) blocks with 1x1 skips, minibatch std, FC;
    with ``pack`` > 1 it judges that many images at once, stacked along the channels (one logit per pack)."""

    def __init__(self, resolution: int, img_channels: int, channel_base: int, channel_max: int, mbstd_group: int = 4,
                 pack: int = 1) -> None:
        super().__init__()
        ch = channels_at(resolution, channel_base, channel_max)
        self.pack = pack
        self.from_rgb = EqualConv2d(img_channels * pack, ch, 1, activate=True)
        blocks = []
        res = resolution
        while res > 4:
            out = channels_at(res // 2, channel_base, channel_max)
            blocks.append(_DBlock(ch, out))
            res, ch = res // 2, out
        self.blocks = nn.ModuleList(blocks)
        self.mbstd_group = mbstd_group
        self.conv = EqualConv2d(ch + 1, ch, 3, activate=True)
        self.fc = EqualLinear(ch * 16, ch, activate=True)
        self.out = EqualLinear(ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, C, R, R] -> logits [N / pack]
        h = self.from_rgb(pack_samples(x, self.pack))
        for block in self.blocks:
            h = block(h)
        h = self.conv(minibatch_stddev(h, self.mbstd_group))  # [N, C4, 4, 4]
        return self.out(self.fc(h.flatten(1))).squeeze(1)


class _DBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = EqualConv2d(in_ch, in_ch, 3, activate=True)
        self.conv2 = EqualConv2d(in_ch, out_ch, 3, activate=True)
        self.skip = EqualConv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [N, C_in, H, W] -> [N, C_out, H/2, W/2]; the 1/sqrt(2) keeps the sum's variance that of one branch
        h = F.avg_pool2d(self.conv2(self.conv1(x)), 2)
        return (h + self.skip(F.avg_pool2d(x, 2))) / math.sqrt(2.0)


class PointDiscriminator(nn.Module):
    """Equalised-lr MLP over [N, D] points, with the minibatch-std feature before the last layers; with
    ``fourier_octaves`` > 0 it also sees sin/cos of the coordinates (hub.layers.fourier_encode), so it can
    resolve modes far narrower than their spacing; with ``pack`` > 1 it judges that many points at once, their
    (encoded) coordinates side by side (one logit per pack)."""

    def __init__(self, dim: int, width: int, num_layers: int, mbstd_group: int = 4, fourier_octaves: int = 0,
                 pack: int = 1) -> None:
        super().__init__()
        self.octaves = fourier_octaves
        self.pack = pack
        dims = [encoded_width(dim, fourier_octaves) * pack] + [width] * num_layers
        self.body = nn.Sequential(*(EqualLinear(a, b, activate=True) for a, b in zip(dims, dims[1:])))
        self.mbstd_group = mbstd_group
        self.fc = EqualLinear(width + 1, width, activate=True)
        self.out = EqualLinear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, D] -> logits [N / pack]
        h = self.body(pack_samples(fourier_encode(x, self.octaves), self.pack))[:, :, None, None]
        h = minibatch_stddev(h, self.mbstd_group).flatten(1)
        return self.out(self.fc(h)).squeeze(1)


def build_style_networks(
    sample_shape: tuple[int, ...], *, z_dim: int, w_dim: int, mapping_layers: int, mapping_lr_mul: float,
    w_avg_beta: float, channel_base: int, channel_max: int, width: int, num_layers: int, mbstd_group: int,
    d_fourier_octaves: int = 0, pack: int = 1, g_fourier_octaves: int = 0,
) -> tuple[StyleGenerator, nn.Module]:
    """(generator, discriminator) for [C, H, W] images or [D] points (``d_fourier_octaves``: points only; ``pack``:
    samples D judges at once; ``g_fourier_octaves``: the mapping network also sees sin/cos of z)."""
    mapping = MappingNetwork(z_dim, w_dim, mapping_layers, mapping_lr_mul, w_avg_beta, g_fourier_octaves)
    if len(sample_shape) == 1:
        dim = sample_shape[0]
        return (StyleGenerator(mapping, PointSynthesis(dim, w_dim, width, num_layers)),
                PointDiscriminator(dim, width, num_layers, mbstd_group, d_fourier_octaves, pack))
    c, h, _ = sample_shape
    return (StyleGenerator(mapping, ImageSynthesis(h, c, w_dim, channel_base, channel_max)),
            ImageDiscriminator(h, c, channel_base, channel_max, mbstd_group, pack))


__all__ = [
    "NOISE_MODES", "ImageDiscriminator", "NoiseDraw", "ImageSynthesis", "PointDiscriminator", "PointSynthesis", "StyleGenerator",
    "build_style_networks", "channels_at",
]
