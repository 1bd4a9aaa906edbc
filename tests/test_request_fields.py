"""One place per request field: the client's keyword arguments and the CLI's options are derived from the
GenerateRequest proto (``hub.request_fields``), so a field added to the proto, SampleRequest and its validation
reaches both with no edit to either."""

from __future__ import annotations

from typing import Any

import click
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from hub import request_fields
from hub.cli import generate
from hub.client import build_request
from hub.errors import InvalidArgument
from hub.v1 import generation_pb2, types_pb2

# Fields the CLI reaches otherwise than by an option of their own name, and the one it has no use for.
CLI_STRUCTURED = {"model": "ref", "task": "task", "params": "params"}  # field -> `generate` parameter
CLI_EXEMPT = {"format": "the CLI always writes a PNG grid; it asks a server for raw tensors"}
TEXT = {int: "3", float: "0.5", str: "a red circle"}
VALUE = {int: 3, float: 0.5, str: "a red circle"}


def cli_params(args: list[str]) -> dict[str, Any]:
    """What `genhub generate ARGS` parses its command line into (no registry opened, nothing generated)."""
    with generate.make_context("generate", args) as ctx:
        return dict(ctx.params)


def test_every_generate_request_field_is_reachable_from_the_cli_and_the_client() -> None:
    names = [f.name for f in generation_pb2.GenerateRequest.DESCRIPTOR.fields]
    options = {p.name for p in generate.params}
    for name in names:
        assert name in request_fields.FIELDS or name in request_fields.STRUCTURED, f"{name}: neither scalar nor structured"
        assert name in options or CLI_STRUCTURED.get(name) in options or name in CLI_EXEMPT, \
            f"GenerateRequest.{name} has no `genhub generate` option"
    from hub.server.inference_codec import INPUTS, ROUTING

    assert set(INPUTS) == set(request_fields.FIELDS) - set(ROUTING)  # the Open Inference Protocol's inputs too
    structured = build_request("m", task=None, params={"k": 1}, format="tensor")
    assert (structured.model, structured.params["k"].int_value, structured.format) == ("m", 1, types_pb2.IMAGE_FORMAT_RAW_TENSOR)
    routed = build_request(task="digits", condition=7)
    assert (routed.task.dataset, routed.task.condition) == ("digits", "7")


@pytest.mark.parametrize("condition", ["class_label", "prompt"])  # the two members of oneof conditioning
def test_each_scalar_field_goes_from_a_cli_option_to_the_message_with_its_type(condition: str) -> None:
    chosen = {n: f for n, f in request_fields.FIELDS.items() if not f.oneof or n == condition}
    args = ["m"]
    for field in chosen.values():
        flag = next(o for p in generate.params if p.name == field.name for o in p.opts if o.startswith("--"))
        args += [flag, TEXT[field.type]]
    parsed = cli_params(args)
    fields = {n: parsed[n] for n in chosen}
    assert fields == {n: VALUE[f.type] for n, f in chosen.items()}  # click converted each to the proto's type
    message = build_request("m", **fields)
    for name, value in fields.items():
        assert getattr(message, name) == pytest.approx(value), name


def test_client_refuses_unknown_fields_negative_unsigned_values_and_two_conditions() -> None:
    with pytest.raises(InvalidArgument, match="style_prompt: is not a GenerateRequest field; known: latency_budget_ms"):
        build_request("m", style_prompt="blurry")
    with pytest.raises(InvalidArgument, match="steps: must be >= 0, got -1"):
        build_request("m", steps=-1)
    with pytest.raises(InvalidArgument, match="conditioning: give class_label or prompt, not both"):
        build_request("m", prompt="x", class_label=1)
    with pytest.raises(InvalidArgument, match="steps: must be int, got str"):
        build_request("m", steps="4")


def test_a_field_added_to_the_proto_becomes_an_option_and_a_keyword() -> None:
    """The derivation itself, on a GenerateRequest with one more field (a string in the oneof, a float outside)."""
    pool = descriptor_pool.DescriptorPool()
    for module in (types_pb2, generation_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        if module is generation_pb2:
            message = next(m for m in proto.message_type if m.name == "GenerateRequest")
            message.field.add(name="style_prompt", number=41, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                              label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL, oneof_index=0)
            message.field.add(name="cfg_rescale", number=42, type=descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
                              label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
        pool.Add(proto)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("hub.v1.GenerateRequest"))
    fields = request_fields.scalar_fields(cls.DESCRIPTOR)
    assert set(fields) - set(request_fields.FIELDS) == {"style_prompt", "cfg_rescale"}
    assert (fields["style_prompt"].type, fields["style_prompt"].oneof) == (str, "conditioning")

    @click.command()
    @request_fields.cli_options(fields)
    def command(**values: Any) -> None:
        """A command with the derived options."""

    with command.make_context("command", ["--style-prompt", "blurry", "--cfg-rescale", "0.7"]) as ctx:
        values = ctx.params
    made = cls()
    request_fields.set_fields(made, values, fields)
    assert made.style_prompt == "blurry" and made.cfg_rescale == pytest.approx(0.7)
    with pytest.raises(InvalidArgument, match="conditioning: give prompt or style_prompt, not both"):
        request_fields.set_fields(cls(), {"prompt": "a", "style_prompt": "b"}, fields)


def test_demo_tags_are_read_as_any_request_field() -> None:
    from hub.cli import demo_fields

    tags = ["demo.eta=0.5", "demo.steps=7", "demo.seed=3", "demo.nope=1"]
    assert demo_fields(tags) == {"eta": 0.5, "steps": 7}
    with pytest.raises(InvalidArgument, match="steps: must be int, got 'seven'"):
        demo_fields(["demo.steps=seven"])
