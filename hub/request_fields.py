"""The GenerateRequest's fields, read from the proto, for everything that *sets* them: the client's keyword
arguments (``hub.client.build_request``), the CLI's ``genhub generate`` options and the demo's tags.

A new request field is written in the proto, ``SampleRequest`` and the validation (``hub.server.requests``);
a scalar field then reaches the client and the CLI from here, with nothing to edit. Only the structured
fields (``model``, ``task``, ``params``, ``format``) have code of their own in the client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import click
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from hub.errors import InvalidArgument
from hub.v1 import generation_pb2

STRUCTURED = ("model", "task", "params", "format")  # set by build_request's own arguments
_TYPES: dict[int, type] = {
    FieldDescriptor.TYPE_STRING: str, FieldDescriptor.TYPE_BOOL: bool,
    FieldDescriptor.TYPE_FLOAT: float, FieldDescriptor.TYPE_DOUBLE: float,
    FieldDescriptor.TYPE_INT32: int, FieldDescriptor.TYPE_INT64: int, FieldDescriptor.TYPE_SINT32: int,
    FieldDescriptor.TYPE_SINT64: int, FieldDescriptor.TYPE_UINT32: int, FieldDescriptor.TYPE_UINT64: int,
}
_UNSIGNED = (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64)

# How `genhub generate` spells and explains the fields it had before this table; optional: a field missing here
# becomes --its-name with a help line pointing at the proto.
CLI_FLAGS: dict[str, tuple[str, ...]] = {
    "num_samples": ("-n", "--num-samples"),
    "latency_budget_ms": ("--budget-ms",),
    "guidance_scale": ("--guidance", "--guidance-scale"),
    "class_label": ("--label", "--class-label"),
}
CLI_HELP: dict[str, str] = {
    "latency_budget_ms": "With --task: latency budget, p50 at batch 1 (see `genhub route`).",
    "num_samples": "Samples (default: 16 images, or 2000 points drawn over the true modes).",
    "seed": "Seed; sample i depends only on (seed, i).",
    "sampler": "Sampler name (diffusion models), e.g. ddpm or ddim.",
    "steps": "Sampling steps (default: the model's).",
    "eta": "DDIM stochasticity, 0-1.",
    "guidance_scale": "Classifier-free guidance scale.",
    "truncation": "GAN truncation psi.",
    "class_label": "Class label for every sample.",
    "prompt": "Text prompt for every sample.",
    "negative_prompt": "Text to guide away from (text-to-image models with guidance).",
}
CLI_DEFAULTS: dict[str, Any] = {"seed": 0}  # the CLI is reproducible by default; the server picks a seed when unset


@dataclass(frozen=True)
class RequestField:
    """One scalar field of GenerateRequest: how a Python value is checked and set on the message."""

    name: str
    type: type  # int, float, str or bool
    unsigned: bool
    oneof: str | None  # the oneof it belongs to (e.g. "conditioning"): at most one member may be given
    proto_type: int = FieldDescriptor.TYPE_STRING  # FieldDescriptor.TYPE_*: the wire width (other wire formats map it)

    def set(self, message: Any, value: Any) -> None:
        """Set ``value`` on ``message``; a negative unsigned value is refused (protobuf would raise a bare ValueError)."""
        if self.type is not bool and isinstance(value, bool) or not isinstance(value, (int, float) if self.type is float else self.type):
            raise InvalidArgument(self.name, f"must be {self.type.__name__}, got {type(value).__name__} {value!r}")
        if self.unsigned and value < 0:
            raise InvalidArgument(self.name, f"must be >= 0, got {value}")
        setattr(message, self.name, value)


def scalar_fields(descriptor: Descriptor = generation_pb2.GenerateRequest.DESCRIPTOR) -> dict[str, RequestField]:
    """The scalar fields of a request message (``descriptor``), in proto order; ``STRUCTURED`` ones left out."""
    fields = {}
    for field in descriptor.fields:
        if field.name in STRUCTURED or field.type not in _TYPES or field.is_repeated:
            continue
        oneof = field.containing_oneof
        real = oneof is not None and not oneof.name.startswith("_")  # proto3 `optional` is a synthetic oneof "_name"
        fields[field.name] = RequestField(field.name, _TYPES[field.type], field.type in _UNSIGNED, oneof.name if real else None,
                                          field.type)
    return fields


FIELDS = scalar_fields()


def set_fields(message: Any, values: dict[str, Any], fields: dict[str, RequestField] = FIELDS) -> None:
    """Set every non-None entry of ``values`` (field name -> value) on ``message``; unknown names and two members
    of one oneof are refused, naming them."""
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise InvalidArgument(unknown[0], f"is not a GenerateRequest field; known: {', '.join(fields)} "
                                          f"(and model, task, params, format)")
    given = {name: value for name, value in values.items() if value is not None}
    oneofs: dict[str, list[str]] = {}
    for name in (n for n in fields if n in given):  # proto order, so the error reads the same every time
        if fields[name].oneof:
            oneofs.setdefault(fields[name].oneof, []).append(name)  # type: ignore[arg-type]
    for oneof, members in oneofs.items():
        if len(members) > 1:
            raise InvalidArgument(oneof, f"give {' or '.join(members)}, not both")
    for name, value in given.items():
        fields[name].set(message, value)


def cli_options(fields: dict[str, RequestField] = FIELDS) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A click decorator adding one option per scalar GenerateRequest field (parameter name = field name)."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for field in reversed(list(fields.values())):  # click lists options in decoration order, bottom up
            flags = CLI_FLAGS.get(field.name, ("--" + field.name.replace("_", "-"),))
            help_text = CLI_HELP.get(field.name, f"GenerateRequest.{field.name} (see protos/hub/v1/generation.proto).")
            kind: Any = click.IntRange(0) if field.unsigned else field.type
            default = CLI_DEFAULTS.get(field.name)
            command = click.option(*flags, field.name, type=kind, default=default, show_default=default is not None,
                                   help=help_text)(command)
        return command

    return decorate


def from_text(name: str, text: str) -> Any:
    """A field's value from text (a demo tag, a config file): converted to the field's type, or InvalidArgument."""
    field = FIELDS.get(name)
    if field is None:
        raise InvalidArgument(name, f"is not a GenerateRequest field; known: {', '.join(FIELDS)}")
    try:
        return field.type(text) if field.type is not bool else text.lower() in ("1", "true", "yes")
    except ValueError:
        raise InvalidArgument(name, f"must be {field.type.__name__}, got {text!r}") from None
