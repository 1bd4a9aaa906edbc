"""StyleGAN building blocks against the formulas of the paper."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genhub_stylegan.augment import diff_augment, parse_policy
from genhub_stylegan.layers import EqualLinear, MappingNetwork, ModulatedConv2d, minibatch_stddev, modulated_conv2d
from hub.errors import InvalidArgument


def explicit_modulated_conv(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool,
                            padding: int) -> torch.Tensor:
    """The paper's definition, one sample at a time: scale the weights, demodulate, convolve."""
    outs = []
    for n in range(x.shape[0]):
        w = weight * styles[n][None, :, None, None]  # w'_{o,i,k} = s_i w_{o,i,k}
        if demodulate:
            w = w / torch.sqrt((w**2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)  # w'' = w' / sqrt(sum_{i,k} w'^2)
        outs.append(F.conv2d(x[n : n + 1], w, padding=padding))
    return torch.cat(outs)


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("kernel", [1, 3])
def test_modulated_conv_equals_the_per_sample_weight_formula(demodulate: bool, kernel: int) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 6, 6, generator=g, dtype=torch.float64)
    weight = torch.randn(4, 5, kernel, kernel, generator=g, dtype=torch.float64)
    styles = torch.rand(3, 5, generator=g, dtype=torch.float64) * 2 + 0.1
    got = modulated_conv2d(x, weight, styles, demodulate=demodulate, padding=kernel // 2)
    want = explicit_modulated_conv(x, weight, styles, demodulate, kernel // 2)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_modulated_conv_on_1x1_maps_uses_the_same_formula() -> None:
    g = torch.Generator().manual_seed(1)
    x, weight, styles = torch.randn(4, 6, 1, 1, generator=g), torch.randn(3, 6, 1, 1, generator=g), torch.rand(4, 6, generator=g)
    torch.testing.assert_close(modulated_conv2d(x, weight, styles), explicit_modulated_conv(x, weight, styles, True, 0))


def test_demodulation_gives_unit_variance_outputs_for_unit_variance_inputs() -> None:
    torch.manual_seed(0)
    conv = ModulatedConv2d(64, 32, 3, w_dim=8)
    with torch.no_grad():
        out = conv(torch.randn(16, 64, 16, 16), torch.randn(16, 8) * 3)
    assert 0.7 < float(out[:, :, 2:-2, 2:-2].std()) < 1.3  # away from the zero padding


def test_modulated_conv_rejects_mismatched_styles() -> None:
    with pytest.raises(ValueError, match=r"styles \[N, I\]"):
        modulated_conv2d(torch.randn(2, 3, 4, 4), torch.randn(5, 3, 3, 3), torch.randn(2, 4))


def test_equalised_learning_rate_scales_weights_at_runtime() -> None:
    torch.manual_seed(0)
    layer = EqualLinear(16, 4, lr_mul=0.01, bias_init=1.0)
    x = torch.randn(2, 16)
    want = x @ (layer.weight * 0.01 / math.sqrt(16)).t() + layer.bias * 0.01
    torch.testing.assert_close(layer(x), want)
    torch.testing.assert_close(layer.bias * 0.01, torch.ones(4))  # the stored bias is bias_init / lr_mul


def test_mapping_tracks_the_w_average_only_when_asked() -> None:
    torch.manual_seed(0)
    mapping = MappingNetwork(8, 8, 2, w_avg_beta=0.5)
    z = torch.randn(10, 8)
    mapping(z)
    assert torch.equal(mapping.w_avg, torch.zeros(8))
    w = mapping(z, track_w_avg=True)
    torch.testing.assert_close(mapping.w_avg, 0.5 * w.mean(0))


def test_minibatch_stddev_appends_the_group_statistic() -> None:
    x = torch.randn(6, 3, 2, 2)
    out = minibatch_stddev(x, group_size=4)  # groups of 3 (the largest divisor of 6 not above 4)
    assert out.shape == (6, 4, 2, 2)
    groups = x.reshape(3, 2, 3, 2, 2)
    want = (groups.var(0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [2]
    torch.testing.assert_close(out[:, 3, 0, 0], want.repeat(3))


def test_diff_augment_keeps_shapes_and_gradients() -> None:
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    y = diff_augment(x, parse_policy("color,translation,cutout"))
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(InvalidArgument, match="unknown augmentation.*'flip'"):
        parse_policy("translation,flip")
