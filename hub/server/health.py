"""grpc.health.v1 for the local server: grpcio-health's asyncio servicer plus ``List``.

``Check`` and ``Watch`` come from grpcio-health (``Watch`` is a coroutine that writes
to the call, which ``hub.server.status`` passes through as such). ``List`` returns every
service's status, as the health protocol describes it.
"""

from __future__ import annotations

from typing import Any

from grpc_health.v1 import health, health_pb2

MAX_LISTED = 100  # the server registers a handful of services; a bound keeps the answer small regardless


class Health(health.aio.HealthServicer):
    def serving(self, service: str = "") -> bool:
        """Whether ``service`` ("" : the whole server) is SERVING now: the open protocol's readiness reads it too."""
        return self._server_status.get(service) == health_pb2.HealthCheckResponse.SERVING

    async def List(self, request: health_pb2.HealthListRequest, context: Any) -> health_pb2.HealthListResponse:
        statuses = sorted(self._server_status.items())[:MAX_LISTED]
        return health_pb2.HealthListResponse(
            statuses={name: health_pb2.HealthCheckResponse(status=status) for name, status in statuses}
        )
