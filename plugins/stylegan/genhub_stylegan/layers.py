"""StyleGAN2 building blocks, written from the paper (Karras et al. 2020, "Analyzing and Improving the Image
Quality of StyleGAN"): equalised learning rate, modulated convolution with demodulation, noise inputs, the
mapping network and the discriminator's minibatch standard deviation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hub.layers import encoded_width, fourier_encode

LRELU_GAIN = math.sqrt(2.0)  # keeps the activations' second moment through leaky ReLU(0.2)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * LRELU_GAIN


class EqualLinear(nn.Module):
    """A linear layer with equalised learning rate.

    Weights are stored N(0, 1) / lr_mul and scaled by lr_mul / sqrt(fan_in) at every call, so Adam moves every
    layer at the same relative speed; ``lr_mul`` < 1 slows a layer down (the mapping network uses 0.01).
    """

    def __init__(self, in_features: int, out_features: int, *, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, in] -> [N, out]
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return lrelu(out) if self.activate else out


class EqualConv2d(nn.Module):
    """A convolution with equalised learning rate (weights N(0, 1), scaled by 1 / sqrt(fan_in) at every call)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, *, bias: bool = True, activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel * kernel)
        self.padding = kernel // 2
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, C_in, H, W] -> [N, C_out, H, W]
        out = F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)
        return lrelu(out) if self.activate else out


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, demodulate: bool = True,
                     padding: int = 0, eps: float = 1e-8) -> torch.Tensor:
    """Convolve each sample with its own weights: w'[n,o,i,k] = s[n,i] w[o,i,k], then (optionally) demodulate,
    w''[n,o,i,k] = w'[n,o,i,k] / sqrt(sum_{i,k} w'[n,o,i,k]^2 + eps), so every output map has unit expected variance.

    x: [N, I, H, W]; weight: [O, I, k, k]; styles: [N, I] -> [N, O, H', W'].
    Computed without materialising per-sample weights (the paper notes the equivalence): scale the input
    channels by s, convolve with the shared weight, scale the output channels by the demodulation factor
    d[n,o] = 1 / sqrt(sum_i s[n,i]^2 sum_k w[o,i,k]^2 + eps). On a CPU this is many times faster than a
    grouped convolution over per-sample weights.
    """
    n, in_ch = x.shape[:2]
    out_ch, w_in, k, _ = weight.shape
    if x.dim() != 4 or w_in != in_ch or styles.shape != (n, in_ch):
        raise ValueError(f"modulated_conv2d: x {tuple(x.shape)}, weight {tuple(weight.shape)} and styles "
                         f"{tuple(styles.shape)} disagree; need x [N, I, H, W], weight [O, I, k, k], styles [N, I]")
    x = x * styles[:, :, None, None]
    if k == 1 and padding == 0 and x.shape[2] == x.shape[3] == 1:  # 1x1 maps (points): a plain matrix product
        out = F.linear(x.flatten(1), weight.flatten(1))[:, :, None, None]
    else:
        out = F.conv2d(x, weight, padding=padding)
    if demodulate:
        d = torch.rsqrt(styles.pow(2) @ weight.pow(2).sum(dim=(2, 3)).t() + eps)  # [N, O]
        out = out * d[:, :, None, None]
    return out


class ModulatedConv2d(nn.Module):
    """A modulated convolution whose styles come from w through an affine layer (bias 1: identity at start)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, w_dim: int, *, demodulate: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_channels * kernel * kernel)
        self.padding = kernel // 2
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # x: [N, C_in, H, W], w: [N, w_dim] -> [N, C_out, H, W]
        styles = self.affine(w)
        if not self.demodulate:  # toRGB: no demodulation, so fold the equalised-lr scale into the styles
            styles = styles * self.scale
        return modulated_conv2d(x, self.weight, styles, demodulate=self.demodulate, padding=self.padding)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 (or 1x1) convolution, optional 2x upsampling first, per-pixel noise, bias, leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, *, kernel: int = 3,
                 upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel, w_dim)
        self.upsample = upsample
        self.resolution = resolution  # H = W of the output
        # Noise strength starts at 0: noise only matters once training finds it useful (stochastic detail).
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        # A fixed noise map, for the "const" noise mode (reproducible, seed-independent fine detail).
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        # x: [N, C_in, H/2 or H, ...], w: [N, w_dim], noise: [N or 1, 1, H, W] (None: fresh random noise)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.conv(x, w)
        if noise is None:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        x = x + self.noise_strength * noise
        return lrelu(x + self.bias[None, :, None, None])


class ToOutput(nn.Module):
    """toRGB (or toXY for points): a modulated 1x1 convolution without demodulation, plus a bias."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


class MappingNetwork(nn.Module):
    """z -> w: normalise z to the unit sphere (times sqrt(dim)), then an MLP trained at lr_mul x the learning rate.

    Tracks ``w_avg``, a moving average of w over training, the centre that truncation pulls towards. With
    ``fourier_octaves`` > 0 the MLP also sees sin/cos of the normalised z (hub.layers.fourier_encode): periodic
    features make a nearly piecewise-constant z -> mode map (a grid of separated modes) easier to express.
    """

    def __init__(self, z_dim: int, w_dim: int, num_layers: int, lr_mul: float = 0.01, w_avg_beta: float = 0.995,
                 fourier_octaves: int = 0) -> None:
        super().__init__()
        self.octaves = fourier_octaves
        dims = [encoded_width(z_dim, fourier_octaves)] + [w_dim] * num_layers
        self.layers = nn.Sequential(*(EqualLinear(a, b, lr_mul=lr_mul, activate=True) for a, b in zip(dims, dims[1:])))
        self.z_dim = z_dim
        self.w_avg_beta = w_avg_beta
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, track_w_avg: bool = False) -> torch.Tensor:
        # z: [N, z_dim] -> w: [N, w_dim]
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"mapping network expects z [N, {self.z_dim}], got shape {tuple(z.shape)}")
        z = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        w = self.layers(fourier_encode(z, self.octaves))
        if track_w_avg:
            with torch.no_grad():
                self.w_avg.lerp_(w.detach().mean(dim=0), 1.0 - self.w_avg_beta)
        return w


def minibatch_stddev(x: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    """Append one feature: the std of each feature across a group of samples, averaged (a diversity signal for D).

    x: [N, C, H, W] -> [N, C + 1, H, W]. The group is the largest divisor of N not above ``group_size``.
    """
    n, c, h, w = x.shape
    g = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
    y = x.reshape(g, n // g, c, h, w)
    y = ((y - y.mean(dim=0)).pow(2).mean(dim=0) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [N/g] (var() is slow on CPU here)
    y = y.repeat(g)[:, None, None, None].expand(n, 1, h, w)  # sample j of every group gets statistic j
    return torch.cat([x, y], dim=1)


def pack_samples(x: torch.Tensor, pack: int) -> torch.Tensor:
    """PacGAN (Lin et al. 2018): [N, C, ...] -> [N / pack, pack * C, ...], consecutive samples side by side along
    the features, so D judges ``pack`` samples at once and a generator that repeats itself is easy to spot."""
    if pack == 1:
        return x
    n = x.shape[0]
    if n % pack:
        raise ValueError(f"a discriminator packing {pack} samples needs a batch divisible by {pack}, got {n}")
    return x.reshape(n // pack, pack * x.shape[1], *x.shape[2:])
