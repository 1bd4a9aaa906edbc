"""The plain GAN baseline's networks (Goodfellow et al. 2014; Radford et al. 2016): z goes straight into the
generator, with no mapping network, no styles, no noise inputs and no minibatch statistics in the discriminator.
Kept deliberately simple as a reference for mode collapse.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLPGenerator(nn.Module):
    """z [N, z_dim] -> points [N, D] through ReLU layers."""

    def __init__(self, z_dim: int, dim: int, width: int, num_layers: int) -> None:
        super().__init__()
        dims = [z_dim] + [width] * num_layers
        layers: list[nn.Module] = []
        for a, b in zip(dims, dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(width, dim))
        self.z_dim = z_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """points [N, D] -> logits [N] through leaky-ReLU layers."""

    def __init__(self, dim: int, width: int, num_layers: int) -> None:
        super().__init__()
        dims = [dim] + [width] * num_layers
        layers: list[nn.Module] = []
        for a, b in zip(dims, dims[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class ConvGenerator(nn.Module):
    """DCGAN-like: z -> FC -> [C, 4, 4] -> (upsample, conv, ReLU) per doubling -> conv -> tanh.

    No batch normalisation, so a sample never depends on the others in its batch.
    """

    def __init__(self, z_dim: int, img_channels: int, resolution: int, channels: int) -> None:
        super().__init__()
        if resolution < 4 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of 2 >= 4, got {resolution}")
        self.z_dim = z_dim
        self.fc = nn.Linear(z_dim, channels * 16)
        ups = []
        res, ch = 4, channels
        while res < resolution:
            out = max(16, ch // 2)
            ups.append(nn.Conv2d(ch, out, 3, padding=1))
            res, ch = res * 2, out
        self.ups = nn.ModuleList(ups)
        self.channels = channels
        self.out = nn.Conv2d(ch, img_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # z: [N, z_dim] -> [N, C, R, R] in (-1, 1)
        h = F.relu(self.fc(z)).reshape(z.shape[0], self.channels, 4, 4)
        for conv in self.ups:
            h = F.relu(conv(F.interpolate(h, scale_factor=2, mode="nearest")))
        return torch.tanh(self.out(h))


class ConvDiscriminator(nn.Module):
    """Strided 4x4 convolutions with leaky ReLU down to 4x4, then a linear logit."""

    def __init__(self, img_channels: int, resolution: int, channels: int) -> None:
        super().__init__()
        convs = []
        downs = max(0, resolution.bit_length() - 3)  # halvings from R down to 4
        # widths double towards the bottom, ending at ``channels``
        res, ch_in, ch = resolution, img_channels, max(16, channels >> max(0, downs - 1))
        while res > 4:
            convs.append(nn.Conv2d(ch_in, ch, 4, stride=2, padding=1))
            res, ch_in, ch = res // 2, ch, min(channels, ch * 2)
        self.convs = nn.ModuleList(convs)
        self.fc = nn.Linear(ch_in * 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, C, R, R] -> logits [N]
        h = x
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
        return self.fc(h.flatten(1)).squeeze(1)
