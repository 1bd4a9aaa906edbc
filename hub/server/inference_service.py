"""The Open Inference Protocol's gRPC service (``inference.GRPCInferenceService``) on the local server.

A thin adapter: ModelInfer parses with ``hub.server.inference_codec`` and runs through
``GenerationService.generate``, the path hub.v1's Generate takes (admission limits, batching, deadlines,
cancellation, the generation log); errors are domain errors, mapped to status codes by ``hub.server.status``.
"""

from __future__ import annotations

import time
from grpc import aio

from hub import metrics as series
from hub.errors import NotFound
from hub.inference import grpc_predict_v2_pb2 as pb
from hub.inference import grpc_predict_v2_pb2_grpc as pb_grpc
from hub.server import inference_codec as codec
from hub.server.health import Health
from hub.server.services import GenerationService, call_deadline, request_id


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """Health, metadata and inference in the open protocol, over the same generation service as hub.v1."""

    def __init__(self, generation: GenerationService, health: Health) -> None:
        self.generation = generation
        self.hub_thread = generation.hub_thread
        self.resolver = generation.resolver
        self.health = health  # ready exactly when grpc.health.v1 says SERVING: not while syncing or draining

    async def ServerLive(self, request: pb.ServerLiveRequest, context: aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)  # live until it is gone, ready or not

    async def ServerReady(self, request: pb.ServerReadyRequest, context: aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.health.serving(codec.SERVICE_NAME))

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: aio.ServicerContext) -> pb.ServerMetadataResponse:
        return codec.server_metadata()

    async def ModelReady(self, request: pb.ModelReadyRequest, context: aio.ServicerContext) -> pb.ModelReadyResponse:
        """Ready when the server is and the reference resolves to a version whose family is installed (weights load
        on first use)."""
        ref = codec.model_ref(request.name, request.version, name_field="name", version_field="version")
        if not self.health.serving(codec.SERVICE_NAME):  # syncing (the hub thread is busy) or draining
            return pb.ModelReadyResponse(ready=False)
        try:
            version = await self.resolver.resolve(ref)
        except NotFound:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=version.family in self.generation.hub.parts.families)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: aio.ServicerContext) -> pb.ModelMetadataResponse:
        ref = codec.model_ref(request.name, request.version, name_field="name", version_field="version")
        version = await self.resolver.resolve(ref)
        model = await self.generation.model(version)
        versions = await self.hub_thread.run(self.generation.hub.registry.list_versions, version.model)
        return codec.metadata_response(request.name, [v.version for v in versions], codec.signature(model, version.family))

    async def ModelInfer(self, request: pb.ModelInferRequest, context: aio.ServicerContext) -> pb.ModelInferResponse:
        with series.request(self.generation.metrics, request_id(context)) as timed:  # a refused parse counts too
            parsed, timeout = codec.parse_infer(request)
            deadline = call_deadline(context)
            if timeout is not None:  # Triton's timeout parameter: the earlier of it and the call's deadline
                deadline = min(deadline, time.monotonic() + timeout) if deadline is not None else time.monotonic() + timeout
            return codec.infer_response(request, await self.generation.generate(parsed, deadline, timed))

