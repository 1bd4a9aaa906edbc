"""Names shared by the Serve app, its config file and its tests (no Ray import: the CLI loads this)."""

from __future__ import annotations

from typing import Any

APP_NAME = "genhub"
INGRESS_NAME = "Ingress"
SERVICER_FUNCTIONS = [
    "hub.v1.registry_pb2_grpc.add_RegistryServiceServicer_to_server",
    "hub.ray.proxy.add_GenerationServiceServicer_to_server",  # the generated one plus a fix for cancelled streams
    "hub.inference.grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server",  # the open inference protocol
]
INGRESS_OPTIONS: dict[str, Any] = {"num_cpus": 0.1}
INGRESS_MAX_ONGOING = 1024  # the ingress only forwards; the model deployments bound the load
DEFAULT_GRPC_PORT = 9000


def deployment_name(model: str) -> str:
    """The Serve deployment of model ``model`` (its versions are multiplexed inside)."""
    return f"model-{model}"
