"""The one thread on which a server touches the registry and loads weights.

Both backends (genhub serve and the Ray replicas) use it, so the event loop never
blocks on SQLite and the database sees one writer per process.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from hub.core import Hub

T = TypeVar("T")


class HubThread:
    """One thread for everything that touches the registry or loads weights."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="genhub-registry")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
