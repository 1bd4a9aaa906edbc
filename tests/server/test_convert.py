"""Request parsing, limits and message conversions, without a server."""

from __future__ import annotations

import pytest
import torch

from hub.errors import InvalidArgument
from hub.model import per_sample_seeds
from hub.server import convert
from hub.client import build_request, decode_image
from hub.v1 import types_pb2


def test_a_request_becomes_the_sample_request_it_asks_for() -> None:
    message = build_request("m@prod", num_samples=3, seed=9, sampler="ddim", steps=20, eta=0.7, guidance_scale=2.5,
                            class_label=4, params={"a": 1, "b": 0.5, "c": "x", "d": True})
    parsed = convert.parse_generate(message, preview_every=5)
    request = parsed.request
    assert (parsed.model, parsed.seed) == ("m@prod", 9)
    assert request.seeds == per_sample_seeds(9, 3) and request.class_labels == [4, 4, 4]
    assert (request.sampler, request.steps, request.eta, request.guidance_scale) == ("ddim", 20, 0.7, 2.5)
    assert request.truncation is None and request.preview_every == 5
    assert request.params == {"a": 1, "b": 0.5, "c": "x", "d": True}
    assert [type(v) for v in request.params.values()] == [int, float, str, bool]


def test_defaults_mean_one_sample_and_the_family_defaults() -> None:
    parsed = convert.parse_generate(build_request("m"))
    assert parsed.request.num_samples == 1 and parsed.request.steps is None and parsed.request.sampler is None
    assert 0 <= parsed.seed < 2**63  # chosen by the server, returned to the client


def test_nan_is_out_of_range() -> None:
    with pytest.raises(InvalidArgument, match="eta: must be between 0 and 1, got nan"):
        convert.parse_generate(build_request("m", eta=float("nan")))


def test_tensors_round_trip_exactly() -> None:
    sample = torch.randn(3, 5, 7)
    message = convert.tensor_message(sample)
    assert list(message.shape) == [3, 5, 7] and len(message.data) == 3 * 5 * 7 * 4
    assert torch.equal(convert.tensor_from_message(message), sample)


def test_png_images_decode_to_the_quantised_samples() -> None:
    samples = torch.rand(2, 3, 4, 4) * 2 - 1  # [N, C, H, W]
    images = convert.image_messages(samples, types_pb2.IMAGE_FORMAT_PNG)
    decoded = torch.stack([decode_image(image) for image in images])
    assert decoded.shape == samples.shape and (decoded - samples).abs().max() <= 1 / 127.5 + 1e-6


def test_previews_are_shrunk_to_at_most_64_pixels() -> None:
    preview = torch.zeros(2, 3, 128, 96)
    images = convert.preview_messages(preview, types_pb2.IMAGE_FORMAT_RAW_TENSOR)
    assert [list(image.tensor.shape) for image in images] == [[3, 64, 48]] * 2
    small = convert.preview_messages(torch.zeros(1, 1, 8, 8), types_pb2.IMAGE_FORMAT_RAW_TENSOR)
    assert list(small[0].tensor.shape) == [1, 8, 8]


def test_formats_resolve_per_output_kind() -> None:
    assert convert.resolve_format(types_pb2.IMAGE_FORMAT_UNSPECIFIED, "image", "m") == types_pb2.IMAGE_FORMAT_PNG
    assert convert.resolve_format(types_pb2.IMAGE_FORMAT_UNSPECIFIED, "points", "m") == types_pb2.IMAGE_FORMAT_RAW_TENSOR
    assert convert.resolve_format(types_pb2.IMAGE_FORMAT_RAW_TENSOR, "image", "m") == types_pb2.IMAGE_FORMAT_RAW_TENSOR
    with pytest.raises(InvalidArgument, match="format"):
        convert.resolve_format(types_pb2.IMAGE_FORMAT_PNG, "points", "m")


def test_client_side_checks_name_the_argument() -> None:
    with pytest.raises(InvalidArgument, match="conditioning: give class_label or prompt, not both"):
        build_request("m", class_label=1, prompt="x")
    with pytest.raises(InvalidArgument, match="format: must be one of"):
        build_request("m", format="jpeg")
