"""Networks of the diffusion GANs: a generator x_0 = G(x_t, t, z) and a time-conditioned discriminator
D(x_{t-1}, x_t, t), each for images (a small UNet with adaptive group norm; a downsampling conv net) and for
points (residual MLPs). With ``z_dim = 0`` the generator is deterministic (the distilled student), and with
``conditional = False`` the discriminator judges x_{t-1} alone (the student's clean outputs).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hub.layers import encoded_width, fourier_encode


def timestep_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of step indices: [N] -> [N, dim]. Steps are few (1..T), so frequencies start at 1."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / max(1, half - 1))
    args = t.to(torch.float32)[:, None] * freqs[None] * 10.0
    return F.pad(torch.cat([torch.cos(args), torch.sin(args)], dim=1), (0, dim % 2))


class Conditioning(nn.Module):
    """(t, z) -> one embedding: an MLP of the time features plus an MLP of z (when z_dim > 0)."""

    def __init__(self, emb_dim: int, z_dim: int) -> None:
        super().__init__()
        self.emb_dim, self.z_dim = emb_dim, z_dim
        self.time = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.latent = nn.Sequential(nn.Linear(z_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)) if z_dim else None

    def forward(self, t: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        # t: [N], z: [N, z_dim] or None -> [N, emb_dim]
        emb = self.time(timestep_features(t, self.emb_dim))
        if self.latent is not None:
            if z is None or z.shape != (t.shape[0], self.z_dim):
                raise ValueError(f"generator expects z [N={t.shape[0]}, {self.z_dim}], got {None if z is None else tuple(z.shape)}")
            emb = emb + self.latent(z)
        return emb


def _groups(channels: int) -> int:
    for g in (8, 4, 2):
        if channels % g == 0:
            return g
    return 1


class _AdaResBlock(nn.Module):
    """Residual block whose group norms are modulated by the embedding (AdaGN): norm(h) * (1 + scale) + shift."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch, affine=False)
        self.mod1 = nn.Linear(emb_dim, 2 * in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch, affine=False)
        self.mod2 = nn.Linear(emb_dim, 2 * out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # x: [N, C_in, H, W], emb: [N, E] -> [N, C_out, H, W]
        scale, shift = self.mod1(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.conv1(F.silu(self.norm1(x) * (1 + scale) + shift))
        scale, shift = self.mod2(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return (self.skip(x) + h) / math.sqrt(2.0)


class ImageGenerator(nn.Module):
    """A small UNet: (x_t [N, C, H, W], t [N], z [N, z_dim]) -> x_0 estimate [N, C, H, W] in (-1, 1)."""

    def __init__(self, channels: int, base: int, mults: tuple[int, ...], z_dim: int, emb_dim: int) -> None:
        super().__init__()
        self.cond = Conditioning(emb_dim, z_dim)
        self.conv_in = nn.Conv2d(channels, base, 3, padding=1)
        widths = [base * m for m in mults]
        self.down = nn.ModuleList()
        ch = base
        for w in widths:
            self.down.append(_AdaResBlock(ch, w, emb_dim))
            ch = w
        self.mid = _AdaResBlock(ch, ch, emb_dim)
        self.up = nn.ModuleList()
        for w in reversed(widths):
            self.up.append(_AdaResBlock(ch + w, w, emb_dim))
            ch = w
        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.conv_out = nn.Conv2d(ch, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        emb = self.cond(t, z)
        h = self.conv_in(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.down) - 1:
                h = F.avg_pool2d(h, 2)
        h = self.mid(h, emb)
        for i, block in enumerate(self.up):
            if i > 0:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return torch.tanh(self.conv_out(F.silu(self.norm_out(h))))


class ImageDiscriminator(nn.Module):
    """(x_{t-1}, x_t, t) -> logits [N]: strided convs over the two images stacked, the time embedding added per level."""

    def __init__(self, channels: int, resolution: int, base: int, mults: tuple[int, ...], emb_dim: int,
                 conditional: bool = True) -> None:
        super().__init__()
        self.conditional = conditional
        self.emb_dim = emb_dim
        self.time = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.LeakyReLU(0.2)) if conditional else None
        self.conv_in = nn.Conv2d(channels * (2 if conditional else 1), base, 3, padding=1)
        self.convs = nn.ModuleList()
        self.temb = nn.ModuleList()
        ch = base
        for m in mults:
            self.convs.append(nn.Conv2d(ch, base * m, 4, stride=2, padding=1))
            self.temb.append(nn.Linear(emb_dim, base * m) if conditional else nn.Identity())
            ch = base * m
        final = resolution // 2 ** len(mults)
        # Flatten, not average: a pooled D cannot see where strokes are, and lost every game to its generator.
        self.out = nn.Linear(ch * final * final + 1, 1)

    def forward(self, x_prev: torch.Tensor, x_t: torch.Tensor | None, t: torch.Tensor | None) -> torch.Tensor:
        if self.conditional:
            assert x_t is not None and t is not None, "a conditional discriminator needs x_t and t"
            h = self.conv_in(torch.cat([x_prev, x_t], dim=1))
            emb = self.time(timestep_features(t, self.emb_dim))  # type: ignore[misc]
        else:
            h, emb = self.conv_in(x_prev), None
        h = F.leaky_relu(h, 0.2)
        for conv, temb in zip(self.convs, self.temb):
            h = conv(h)
            if emb is not None:
                h = h + temb(emb)[:, :, None, None]
            h = F.leaky_relu(h, 0.2)
        feats = h.flatten(1)  # [N, C * h * w]
        std = feats.std(dim=0, unbiased=False).mean().expand(feats.shape[0], 1)  # minibatch std: a diversity signal
        return self.out(torch.cat([feats, std], dim=1)).squeeze(1)


class PointGenerator(nn.Module):
    """(x_t [N, D], t [N], z [N, z_dim]) -> x_0 estimate [N, D]: a leaky-ReLU MLP over (x_t, z), the time embedding
    added to every layer. Plain on purpose: a residual, layer-normalised MLP moved so fast that its discriminator
    never got ahead of it (both sat at chance while samples stayed poor)."""

    def __init__(self, dim: int, width: int, num_layers: int, z_dim: int, emb_dim: int, fourier_octaves: int = 0) -> None:
        super().__init__()
        self.emb_dim, self.z_dim, self.dim, self.octaves = emb_dim, z_dim, dim, fourier_octaves
        self.fc_in = nn.Linear(encoded_width(dim, fourier_octaves) + z_dim, width)
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(num_layers))
        self.temb = nn.ModuleList(nn.Linear(emb_dim, width) for _ in range(num_layers + 1))
        self.fc_out = nn.Linear(width, dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"point generator expects x_t [N, {self.dim}], got {tuple(x.shape)}")
        if self.z_dim and (z is None or z.shape != (x.shape[0], self.z_dim)):
            raise ValueError(f"point generator expects z [N={x.shape[0]}, {self.z_dim}], got {None if z is None else tuple(z.shape)}")
        emb = timestep_features(t, self.emb_dim)
        x = fourier_encode(x, self.octaves)
        h = F.leaky_relu(self.fc_in(torch.cat([x, z], dim=1) if self.z_dim else x) + self.temb[0](emb), 0.2)
        for layer, temb in zip(self.layers, self.temb[1:]):
            h = F.leaky_relu(layer(h) + temb(emb), 0.2)
        return self.fc_out(h)


class PointDiscriminator(nn.Module):
    """(x_{t-1} [N, D], x_t [N, D], t [N]) -> logits [N]: leaky-ReLU MLP, time embedding added to every layer."""

    def __init__(self, dim: int, width: int, num_layers: int, emb_dim: int, conditional: bool = True,
                 fourier_octaves: int = 0) -> None:
        super().__init__()
        self.conditional = conditional
        self.emb_dim, self.octaves = emb_dim, fourier_octaves
        self.fc_in = nn.Linear(encoded_width(dim * (2 if conditional else 1), fourier_octaves), width)
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(num_layers))
        self.temb = nn.ModuleList(nn.Linear(emb_dim, width) for _ in range(num_layers)) if conditional else None
        self.out = nn.Linear(width, 1)

    def forward(self, x_prev: torch.Tensor, x_t: torch.Tensor | None, t: torch.Tensor | None) -> torch.Tensor:
        emb = None
        if self.conditional:
            assert x_t is not None and t is not None, "a conditional discriminator needs x_t and t"
            h = self.fc_in(fourier_encode(torch.cat([x_prev, x_t], dim=1), self.octaves))
            emb = timestep_features(t, self.emb_dim)
        else:
            h = self.fc_in(fourier_encode(x_prev, self.octaves))
        h = F.leaky_relu(h, 0.2)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if emb is not None:
                h = h + self.temb[i](emb)  # type: ignore[index]
            h = F.leaky_relu(h, 0.2)
        return self.out(h).squeeze(1)


def build_networks(sample_shape: tuple[int, ...], *, z_dim: int, base_channels: int, channel_mults: tuple[int, ...],
                   width: int, num_layers: int, emb_dim: int, conditional_d: bool = True,
                   fourier_octaves: int = 0, d_fourier_octaves: int | None = None) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) for [C, H, W] images or [D] points (``fourier_octaves``: points only; the
    discriminator's are ``d_fourier_octaves``, by default the same)."""
    if len(sample_shape) == 1:
        dim = sample_shape[0]
        d_octaves = fourier_octaves if d_fourier_octaves is None else d_fourier_octaves
        return (PointGenerator(dim, width, num_layers, z_dim, emb_dim, fourier_octaves),
                PointDiscriminator(dim, width, num_layers, emb_dim, conditional_d, d_octaves))
    c, h = sample_shape[0], sample_shape[1]
    return (ImageGenerator(c, base_channels, channel_mults, z_dim, emb_dim),
            ImageDiscriminator(c, h, base_channels, channel_mults, emb_dim, conditional_d))
