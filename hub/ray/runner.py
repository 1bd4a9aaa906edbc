"""Start Ray and Serve with the hub.v1 gRPC ingress, run the app, stop everything.

Used by `genhub serve --backend ray`, the tests and the benchmark. On a cluster,
``ray_address="auto"`` joins the running one (and leaves it running on stop).
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable

from hub.ray.constants import APP_NAME, SERVE_ENV, SERVICER_FUNCTIONS

# Settings Ray reads from the environment when it starts: set them before ray.init.
FAST_AUTOSCALING_ENV = {
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
}
LOCAL_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keeps a local instance's sockets on 127.0.0.1 (see NOTES.md)
    "OMP_NUM_THREADS": "1",  # torch in replicas: their thread count is set per replica from num_cpus
    # Ray starts its workers at nice 15 (so the raylet wins on a busy node); a local instance shares its machine
    # with everything else, where the replicas would then yield to any process (the local backend does not).
    "RAY_worker_niceness": "0",
    **SERVE_ENV,  # the proxy's too (on a cluster, set them in the nodes' environment)
}
METRICS_REPORT_MS = 1000  # how often workers report metrics to their node's agent (Ray floors it at 1 s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive_nodes() -> int:
    """Nodes of the Ray cluster this process joined that are alive (1 outside Ray: this machine)."""
    import ray

    if not ray.is_initialized():
        return 1
    return sum(1 for node in ray.nodes() if node.get("Alive"))


def start(grpc_port: int, *, ray_address: str | None = None, num_cpus: float | None = None,
          env: dict[str, str] | None = None, http_port: int | None = None, host: str = "127.0.0.1",
          metrics_port: int | None = None, check: Callable[[], None] | None = None) -> None:
    """ray.init (a local instance unless ``ray_address``), ``check()`` (raises to refuse this cluster before Serve
    starts anything on it), then serve.start with the hub.v1 gRPC proxy.

    On a local instance the gRPC proxy listens on ``host`` only (``hub.ray.bind``), and ``metrics_port`` (if given)
    is where Ray's metrics agent serves Prometheus text (the genhub series as ``ray_genhub_*``), reported every
    ``METRICS_REPORT_MS`` (Ray's default is 10 s).
    """
    import ray
    from ray import serve
    from ray.serve.config import HTTPOptions, gRPCOptions

    from hub.ray.bind import HOST_ENV, SETUP_HOOK

    if ray_address is None:
        os.environ.update({**LOCAL_ENV, **(env or {}), HOST_ENV: host})
        metrics: dict[str, Any] = {} if metrics_port is None else {
            "_metrics_export_port": metrics_port, "_system_config": {"metrics_report_interval_ms": METRICS_REPORT_MS}}
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 runtime_env={"worker_process_setup_hook": SETUP_HOOK}, **metrics)
    else:
        ray.init(address=ray_address, log_to_driver=False)
    if check is not None:
        check()
    serve.start(
        grpc_options=gRPCOptions(port=grpc_port, grpc_servicer_functions=SERVICER_FUNCTIONS),
        http_options=HTTPOptions(host="127.0.0.1", port=http_port or free_port()),
    )


def run(app: Any) -> None:
    """Deploy ``app`` as the genhub application; returns once it is RUNNING."""
    from ray import serve

    serve.run(app, name=APP_NAME, blocking=False)


def stop(*, local: bool = True) -> None:
    """serve.shutdown, then ray.shutdown; a local instance takes its processes with it."""
    import ray
    from ray import serve

    try:
        if ray.is_initialized() and local:
            serve.shutdown()
    finally:
        ray.shutdown()


def replicas(deployment: str, app: str = APP_NAME) -> int:
    """RUNNING replicas of ``deployment`` now."""
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None or deployment not in status.deployments:
        return 0
    return int(status.deployments[deployment].replica_states.get("RUNNING", 0))


def unsettled(app: str = APP_NAME) -> dict[str, str]:
    """Deployments of ``app`` not yet at rest: not HEALTHY, or with a replica in any state but RUNNING (a replacement
    starting, a scale-down stopping). Empty when every replica is up and none is coming or going."""
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None:
        return {"(application)": "not deployed"}
    return {name: f"{d.status}, replicas {dict(d.replica_states)}" for name, d in status.deployments.items()
            if d.status != "HEALTHY" or set(d.replica_states) - {"RUNNING"}}
