"""Random well-typed requests with boundary values, for every method a server lists through reflection.

``Fuzzer.run(method, n)`` sends ``n`` requests built from the method's descriptor (empty, huge and odd
strings, NaN and infinities, extreme integers, long repeated fields, unknown enum values, nested messages)
and returns the status codes it got. Shared by the local-server and the Ray fuzz tests.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Iterator

import grpc
from google.protobuf.descriptor import FieldDescriptor as F

from tests.server.reflect import Method

FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
INTS = [0, 1, -1, 2, 7, 64, 65, 1000, 1001, 2**31 - 1, -(2**31), 2**53]
UINTS = [0, 1, 2, 64, 65, 1000, 1001, 2**31, 2**32 - 1, 2**63 - 1, 2**64 - 1]
FLOATS = [0.0, -0.0, 0.5, 1.0, -1.0, 3.0, 1e-45, 1e308, -1e308, float("nan"), float("inf"), float("-inf")]
ODD = ["", "a", " ", "\x00", "é✓🙂", "../../../etc/passwd", "[" * 200, "{\"after\": 1}", "%s%n", "a" * 300,
       "ddim", "ddpm", "latest", "IMAGE_FORMAT_PNG", "name:0", "name@", "@@", "::", "\u202e\ufeff"]


class Fuzzer:
    def __init__(self, channel: grpc.Channel, seed: int, *, known: list[str], metadata: list[tuple[str, str]],
                 templates: dict[str, Any] | None = None, timeout: float = 10.0, max_string: int = 100_000) -> None:
        self.channel = channel
        self.templates = templates or {}  # method path -> a valid request to mutate
        self.random = random.Random(seed)
        self.known = known  # strings that reach deeper code: model names and references on this server
        self.metadata = metadata
        self.timeout = timeout
        self.max_string = max_string

    # -- values ---------------------------------------------------------------------------------

    def string(self) -> str:
        r = self.random.random()
        if r < 0.35:
            return self.random.choice(self.known)
        if r < 0.7:
            return self.random.choice(ODD)
        if r < 0.9:
            return "".join(chr(self.random.randint(32, 0x2FFF)) for _ in range(self.random.randint(1, 40)))
        return self.random.choice("xyz[") * self.random.randint(1_000, self.max_string)

    def bad_token(self) -> str:
        """A header value gRPC lets a client send (printable ASCII) that is no valid token."""
        return self.random.choice(["Bearer ", "Bearer  ", "bearer x", "Basic a", ""]) + "".join(
            chr(self.random.randint(33, 126)) for _ in range(self.random.choice([0, 5, 47, 300])))

    def scalar(self, field: Any) -> Any:
        t = field.type
        if t in (F.TYPE_STRING,):
            return self.string()
        if t == F.TYPE_BYTES:
            return self.string().encode("utf-8", "surrogatepass")[: self.max_string] if self.random.random() < 0.7 else \
                self.random.randbytes(self.random.choice([0, 1, 4, 16, 1024, 65_536]))
        if t == F.TYPE_BOOL:
            return self.random.random() < 0.5
        if t in (F.TYPE_FLOAT, F.TYPE_DOUBLE):
            return self.random.choice(FLOATS) if self.random.random() < 0.8 else self.random.uniform(-100, 100)
        if t == F.TYPE_ENUM:
            values = [v.number for v in field.enum_type.values]
            return self.random.choice(values + [max(values) + 1, 999, -5])  # proto3 enums are open: unknown values travel
        if t in (F.TYPE_UINT32, F.TYPE_FIXED32):
            return self.random.choice([u for u in UINTS if u < 2**32])
        if t in (F.TYPE_UINT64, F.TYPE_FIXED64):
            return self.random.choice(UINTS)
        if t in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32):
            return self.random.choice([i for i in INTS if -(2**31) <= i < 2**31])
        return self.random.choice(INTS + [2**63 - 1, -(2**63)])  # 64-bit signed

    def fill(self, message: Any, depth: int = 0, keep: float | None = None) -> Any:
        """Set a random subset of ``message``'s fields (oneof members compete; the last set wins).

        Half the messages are sparse (each field set with probability 0.15), so that some requests are valid
        but for one or two odd fields and reach the code behind validation (sampling, the registry).
        """
        if keep is None:
            keep = 0.15 if self.random.random() < 0.5 else 0.6
        for field in message.DESCRIPTOR.fields:
            if self.random.random() < keep:
                self.set_field(message, field, depth, keep)
        return message

    def set_field(self, message: Any, field: Any, depth: int = 0, keep: float = 0.6) -> None:
        """Give ``field`` of ``message`` a random value of its type."""
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            target = getattr(message, field.name)
            key_field, value_field = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            for _ in range(self.random.choice([1, 2, 3, 40])):
                key = self.scalar(key_field)
                if value_field.message_type is not None:
                    if depth < 3:
                        self.fill(target[key], depth + 1, keep)
                else:
                    target[key] = self.scalar(value_field)
        elif field.is_repeated:
            count = self.random.choice([0, 1, 2, 5, 100, 3000])
            target = getattr(message, field.name)
            if field.message_type is not None:
                for _ in range(min(count, 20) if depth < 3 else 0):
                    self.fill(target.add(), depth + 1, keep)
            else:
                value = self.scalar(field)
                target.extend([value if self.random.random() < 0.5 else self.scalar(field) for _ in range(count)]
                              if field.type not in (F.TYPE_STRING, F.TYPE_BYTES) else [self.scalar(field) for _ in range(min(count, 50))])
        elif field.message_type is not None:
            if depth < 3:
                self.fill(getattr(message, field.name), depth + 1, keep)
                if self.random.random() < 0.2:
                    getattr(message, field.name).SetInParent()  # an empty but present sub-message
        else:
            setattr(message, field.name, self.scalar(field))

    # -- calls ----------------------------------------------------------------------------------

    def message(self, method: Method) -> Any:
        """A random request; a third start from the method's valid template (if any) with one field changed."""
        template = self.templates.get(method.path)
        if template is None or self.random.random() < 0.67:
            return self.fill(method.request())
        message = method.request()
        message.ParseFromString(template.SerializeToString())  # the template's class comes from another descriptor pool
        self.set_field(message, self.random.choice(message.DESCRIPTOR.fields))
        return message

    def requests(self, method: Method) -> Iterator[Any]:
        for _ in range(self.random.choice([1, 1, 2, 3])):
            yield self.message(method)

    def call(self, method: Method) -> grpc.StatusCode:
        """One call with a random request (a stream of one to three for client-streaming methods)."""
        kind = ("stream" if method.client_streaming else "unary") + "_" + ("stream" if method.server_streaming else "unary")
        stub = getattr(self.channel, kind)(method.path, request_serializer=lambda m: m.SerializeToString(),
                                           response_deserializer=method.response.FromString)
        roll = self.random.random()  # mostly authorised (to reach the handlers); some with no or a bad token
        metadata = self.metadata if roll < 0.85 else ([] if roll < 0.93 else [("authorization", self.bad_token())])
        request: Any = self.requests(method) if method.client_streaming else self.message(method)
        # Server-streaming calls that may never end (health Watch) get a short deadline: DEADLINE_EXCEEDED is fine.
        timeout = 0.5 if method.path.endswith("/Watch") else self.timeout
        try:
            if method.server_streaming:
                for _ in stub(request, timeout=timeout, metadata=metadata):
                    pass
            else:
                stub(request, timeout=timeout, metadata=metadata)
        except grpc.RpcError as exc:
            code = exc.code()
            if code in FORBIDDEN:
                raise AssertionError(f"{method.path} answered {code.name}: {exc.details()!r}\nrequest: {_short(request)}") from None
            return code
        return grpc.StatusCode.OK

    def run(self, method: Method, n: int) -> Counter[str]:
        return Counter(self.call(method).name for _ in range(n))


def _short(request: Any) -> str:
    text = str(request) if not isinstance(request, Iterator) else "(a request stream)"
    return text if len(text) < 2000 else text[:2000] + f"... ({len(text)} characters)"


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and every process below it."""
    return sum(rss_by_process(pid).values())


def rss_by_process(pid: int) -> dict[str, int]:
    """Resident memory of ``pid`` and of every process below it, by "pid command line"."""
    from tests.ray.conftest import descendants

    sizes = {}
    for p in {pid, *descendants(pid)}:
        try:
            name = f"{p} {open(f'/proc/{p}/cmdline').read().replace(chr(0), ' ').strip()[:60]}"
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    sizes[name] = int(line.split()[1]) * 1024
        except OSError:
            continue
    return sizes
