"""`genhub serve` under a load of generations: SIGTERM writes the whole log; SIGKILL loses at most one flush window.

The generation log is written by a background thread (``hub.registry.genlog``): each
response carries the id its record will have, and records reach the database in one
transaction per flush. So a killed server may have answered requests whose records it
had not written yet, but only the newest ones (at most one flush: 256 records), never
one in the middle, and the registry stays consistent.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path

import grpc

from hub.client import Client
from hub.registry import Registry
from tests.server.harness import IMAGE_MODEL, ServeProcess, TinyHub, wait_for
from tests.server.test_generation import log_mark

MAX_BATCH = 256  # hub.registry.genlog.MAX_BATCH: records per flush


class Load:
    """Callers generating in a loop against ``address``; the ids they were answered with."""

    def __init__(self, address: str, home: Path, callers: int = 3) -> None:
        self.ids: list[int] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._call, args=(address, home, c), daemon=True) for c in range(callers)]
        for t in self._threads:
            t.start()

    def _call(self, address: str, home: Path, caller: int) -> None:
        with Client(address, timeout=30, home=home) as client:
            seed = caller * 100_000
            while not self._stop.is_set():
                try:
                    self.ids.append(client.generate(IMAGE_MODEL, seed=seed, steps=1).generation_id)
                except grpc.RpcError:
                    return  # the server went away
                except Exception:  # noqa: BLE001 - the client's own error types for a vanished server
                    return
                seed += 1

    def stop(self) -> list[int]:
        self._stop.set()
        for t in self._threads:
            t.join(60)
        return list(self.ids)


def logged_since(tiny: TinyHub, mark: datetime) -> set[int]:
    with Registry(tiny.db_url) as registry:
        return {g.id for g in registry.generations(limit=10_000) if g.created_at > mark}


def flushed_since(tiny: TinyHub, mark: datetime) -> bool:
    """Whether the server has written a record since ``mark`` (polled every 50 ms: each poll opens the registry)."""
    time.sleep(0.05)
    return bool(logged_since(tiny, mark))


def run_until(load: Load, answered: int) -> None:
    wait_for(lambda: len(load.ids) >= answered, timeout=120, what=f"{answered} answered generations")


def test_sigterm_writes_every_record_and_sigkill_loses_only_the_last_flush(tiny: TinyHub) -> None:
    # SIGTERM: the server drains, then the writer flushes: every answered request is in the log.
    mark = log_mark(tiny)
    process = ServeProcess(tiny)
    try:
        load = Load(process.address, tiny.home)
        run_until(load, 20)
        assert process.terminate() == 0, process.log
        answered = load.stop()
    finally:
        process.kill()
    assert set(answered) <= logged_since(tiny, mark)

    # SIGKILL mid-load: what is missing is only the newest records, at most one flush of them.
    mark = log_mark(tiny)
    process = ServeProcess(tiny)
    try:
        load = Load(process.address, tiny.home)
        run_until(load, 40)
        # A fast machine answers 40 requests inside one 200 ms flush interval: wait for a flush itself, then for more
        # answers after it, so that the kill falls between flushes whatever the machine's speed.
        wait_for(lambda: flushed_since(tiny, mark), timeout=120, what="a flush of the generation log during the load")
        run_until(load, len(load.ids) + 20)
        process.kill()  # SIGKILL
        answered = load.stop()
    finally:
        process.kill()
    logged = logged_since(tiny, mark)
    missing = set(answered) - logged
    assert len(missing) <= MAX_BATCH, f"{len(missing)} answered requests are missing from the log"
    # records are written in the order their ids were given: the lost ones come after every written one
    assert all(m > max(logged) for m in missing), (sorted(missing), max(logged))
    with Registry(tiny.db_url) as registry:
        assert registry.check_consistency(tiny.hub.artifacts) == []
