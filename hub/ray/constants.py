"""Names shared by the Serve app, its config file and its tests (no Ray import: the CLI loads this)."""

from __future__ import annotations

from typing import Any

APP_NAME = "genhub"
INGRESS_NAME = "Ingress"
SERVICER_FUNCTIONS = [
    "hub.v1.registry_pb2_grpc.add_RegistryServiceServicer_to_server",
    "hub.ray.proxy.add_GenerationServiceServicer_to_server",  # the generated one plus a fix for cancelled streams
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",  # Check, Watch and List, served by the ingress
    "hub.inference.grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server",  # the open inference protocol
]
INGRESS_OPTIONS: dict[str, Any] = {"num_cpus": 0.1}
INGRESS_MAX_ONGOING = 1024  # the ingress only forwards; the model deployments bound the load
DEFAULT_GRPC_PORT = 9000
# Serve's defaults run a replica's user code on an event loop in a second thread and a handle's router on a
# third, so every request and every engine wake-up crosses threads that contend with the engine's sampling thread
# for the GIL. One loop per replica is safe here (sampling and registry work run on threads of their own; the
# second loop only guards against user code that blocks). Measured on a shared 2-CPU machine: one replica at
# 0.67-0.98x the local server's images/s with it (8 runs; 0.31x in a ninth under a load average of 24-40) against
# 0.63-0.78x without (7 runs); the runs' spread is as large as the difference (README, "Serve on a Ray
# cluster"). Set for every replica (the application's runtime_env) and, on a local instance, the proxy too.
SERVE_ENV = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
}


def deployment_name(model: str) -> str:
    """The Serve deployment of model ``model`` (its versions are multiplexed inside)."""
    return f"model-{model}"
