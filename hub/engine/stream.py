"""A stream's progress mailbox: at most the newest undelivered event, so a slow reader costs constant memory."""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class Latest(Generic[T]):
    """One slot: ``put`` replaces an event the reader has not taken yet (previews included); ``close`` ends it.

    Used on one event loop (producers on other threads call ``put`` through ``loop.call_soon_threadsafe``).
    """

    def __init__(self) -> None:
        self._item: T | None = None
        self._full = False
        self._closed = False
        self._changed = asyncio.Event()
        self.coalesced = 0  # events replaced before they were read

    def put(self, item: T) -> None:
        if self._closed:
            return
        if self._full:
            self.coalesced += 1
        self._item, self._full = item, True
        self._changed.set()

    def close(self) -> None:
        self._closed = True
        self._changed.set()

    async def get(self) -> T | None:
        """The newest undelivered event; None once closed and drained."""
        while True:
            if self._full:
                item, self._item, self._full = self._item, None, False
                return item
            if self._closed:
                return None
            self._changed.clear()
            await self._changed.wait()
