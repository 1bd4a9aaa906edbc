"""Network shapes and conditioning."""

from __future__ import annotations

import pytest
import torch

from genhub_ddpm.embeddings import timestep_embedding
from genhub_ddpm.mlp import MLPDenoiser
from genhub_ddpm.unet import UNet


@pytest.mark.parametrize("shape,mults,attn", [((2, 3, 8, 8), (1, 2), ()), ((1, 1, 16, 12), (1, 2, 2), (8,))])
def test_unet_keeps_the_input_shape(shape: tuple[int, ...], mults: tuple[int, ...], attn: tuple[int, ...]) -> None:
    net = UNet(in_channels=shape[1], resolution=shape[2], base_channels=8, channel_mults=mults, attention_resolutions=attn)
    out = net(torch.randn(shape), torch.tensor([0, 999])[: shape[0]])
    assert out.shape == shape


def test_unet_class_embedding_has_a_null_class() -> None:
    net = UNet(in_channels=1, resolution=8, base_channels=8, num_classes=4)
    assert net.embed.class_emb is not None and net.embed.class_emb.num_embeddings == 5
    for p in net.parameters():  # zero-initialised outputs would hide the conditioning
        torch.nn.init.normal_(p, std=0.1)
    x, t = torch.randn(1, 1, 8, 8), torch.tensor([10])
    assert not torch.allclose(net(x, t, torch.tensor([0])), net(x, t, torch.tensor([4])))
    torch.testing.assert_close(net(x, t), net(x, t, torch.tensor([4])))  # None means the null class


def test_mlp_shape_and_error() -> None:
    net = MLPDenoiser(dim=2, hidden=16, num_blocks=2)
    assert net(torch.randn(5, 2), torch.arange(5)).shape == (5, 2)
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        net(torch.randn(5, 3), torch.arange(5))


def test_timestep_embedding_shape() -> None:
    assert timestep_embedding(torch.arange(3), 7).shape == (3, 7)
