"""What a server says it serves, read through gRPC reflection (no protos needed): services, methods, message types.

Used by the auth table test and the fuzz test, so a service added to the server
(the open inference protocol, say) is covered without editing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message_factory import GetMessageClass
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


@dataclass(frozen=True)
class Method:
    path: str  # /package.Service/Method
    request: Any  # message class
    response: Any
    client_streaming: bool
    server_streaming: bool


def _ask(channel: grpc.Channel, requests: list[reflection_pb2.ServerReflectionRequest], metadata: Any = None) -> list[Any]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    return list(stub.ServerReflectionInfo(iter(requests), timeout=30, metadata=metadata))


def served_methods_of(channel: grpc.Channel, metadata: Any = None) -> list[Method]:
    """Every method of every service reflection lists (reflection itself included)."""
    listed = _ask(channel, [reflection_pb2.ServerReflectionRequest(list_services="")], metadata)[0]
    services = [s.name for s in listed.list_services_response.service]
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()
    answers = _ask(channel, [reflection_pb2.ServerReflectionRequest(file_containing_symbol=s) for s in services], metadata)
    files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
             for answer in answers for raw in answer.file_descriptor_response.file_descriptor_proto]
    while files:  # add each file after its dependencies
        progress = False
        for proto in list(files):
            if proto.name in added:
                files.remove(proto)
                progress = True
            elif all(dep in added for dep in proto.dependency):
                pool.Add(proto)
                added.add(proto.name)
                files.remove(proto)
                progress = True
        if not progress:
            raise AssertionError(f"reflection left dependencies unresolved: {[f.name for f in files]}")
    methods = []
    for name in services:
        service = pool.FindServiceByName(name)
        for m in service.methods:
            methods.append(Method(f"/{name}/{m.name}", GetMessageClass(m.input_type), GetMessageClass(m.output_type),
                                  m.client_streaming, m.server_streaming))
    return methods


def served_methods(address: str) -> list[str]:
    with grpc.insecure_channel(address) as channel:
        return [m.path for m in served_methods_of(channel)]
