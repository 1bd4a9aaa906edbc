"""Bind Serve's gRPC proxy to one host (Ray 2.60 listens on ``[::]:PORT``; ``gRPCOptions`` has no host field).

``runner.start`` sets ``GENHUB_RAY_GRPC_HOST`` and installs ``setup`` as the job's
``worker_process_setup_hook``: it runs in every Ray worker process of the job (the Serve
controller and the proxies it starts included) before any task, and makes Serve's
``add_grpc_address`` listen on that host instead of every interface. If a Ray version
lacks that internal it logs a warning and changes nothing (the proxy then listens on
every interface; put a firewall or a Kubernetes Service in front). On a cluster joined
with ``--ray-address`` the proxies already run and are not changed: exposure there is the
Kubernetes Service's (deploy/rayservice.yaml).
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger(__name__)

HOST_ENV = "GENHUB_RAY_GRPC_HOST"
SETUP_HOOK = "hub.ray.bind.setup"
_PATCHED = "_genhub_binds_host"


def setup() -> None:
    """Worker process setup hook: make Serve's gRPC proxy listen on ``$GENHUB_RAY_GRPC_HOST`` only."""
    host = os.environ.get(HOST_ENV)
    if not host:
        return
    try:
        from ray.serve._private import default_impl

        original = default_impl.add_grpc_address
    except (ImportError, AttributeError) as exc:
        log.warning("genhub: cannot bind Serve's gRPC proxy to %s in this Ray version (%s); it listens on every interface",
                    host, exc)
        return
    if getattr(original, _PATCHED, False):
        return

    def add_grpc_address(server: Any, address: str) -> None:
        port = address.rsplit(":", 1)[1]
        original(server, f"[{host}]:{port}" if ":" in host else f"{host}:{port}")

    setattr(add_grpc_address, _PATCHED, True)
    default_impl.add_grpc_address = add_grpc_address
