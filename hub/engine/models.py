"""Loaded models, kept in an LRU bounded by count and bytes; an evicted model's lane closes and its memory goes."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Hashable

from hub.core import model_key
from hub.model import GenerativeModel

if TYPE_CHECKING:
    from hub.engine.engine import Engine
    from hub.engine.hub_thread import HubThread


def model_bytes(model: GenerativeModel) -> int:
    """Bytes of a model's weights and buffers (what ``state_dict`` holds)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


class ModelCache:
    """``key -> model``, least recently used first; ``None`` limits mean unbounded.

    ``put`` returns the keys it evicted (never the one just put, never one ``busy`` says is in use): the
    caller closes their lanes and drops every other reference (the hub's cache), so the memory is freed.
    """

    def __init__(self, max_models: int | None = None, max_bytes: int | None = None) -> None:
        if max_models is not None and max_models < 1:
            raise ValueError(f"max loaded models must be >= 1, got {max_models}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max loaded bytes must be >= 1, got {max_bytes}")
        self.max_models, self.max_bytes = max_models, max_bytes
        self._models: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, key: object) -> bool:
        return key in self._models

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self._models.values())

    def get(self, key: Hashable) -> Any | None:
        hit = self._models.get(key)
        if hit is None:
            return None
        self._models.move_to_end(key)
        return hit[0]

    def put(self, key: Hashable, model: Any, size: int, busy: Any = lambda key: False) -> list[Hashable]:
        self._models[key] = (model, size)
        self._models.move_to_end(key)
        evicted: list[Hashable] = []
        for old in list(self._models):
            if not self._over():
                break
            if old == key or busy(old):
                continue
            del self._models[old]
            evicted.append(old)
        return evicted

    def _over(self) -> bool:
        return (self.max_models is not None and len(self._models) > self.max_models) or (
            self.max_bytes is not None and self.bytes > self.max_bytes)


async def load_through_cache(models: ModelCache, engine: Engine, hub_thread: HubThread, version: Any,
                             device: str | None = None, loaded: Callable[[int], None] | None = None) -> GenerativeModel:
    """``version``'s model, loaded on a miss (the artifact store verifies the weights' digest) and put in ``models``.

    Putting it may evict the least recently used models with idle lanes: their lanes close and the hub's cache drops
    them, so nothing keeps their memory. ``loaded`` hears the new number of loaded models (a metrics gauge). Both
    backends (``genhub serve`` and a Ray replica) load through here.
    """
    key = model_key(version)
    model = models.get(key)
    if model is not None:
        return model
    hub = hub_thread.hub
    model = (await hub_thread.run(hub.load, version.ref, device)).model
    size = await hub_thread.run(model_bytes, model)
    cached = models.get(key)  # another request may have loaded it while this one waited
    if cached is not None:
        return cached
    lanes = engine.lanes
    for old in models.put(key, model, size, busy=lambda k: k in lanes and not lanes[k].idle):
        await engine.drop(old)
        await hub_thread.run(hub.unload, *old)
    if loaded is not None:
        loaded(len(models))
    return model
