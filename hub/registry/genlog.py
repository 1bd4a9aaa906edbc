"""The generation log, written in batches by a background thread, off the request's path.

``submit`` checks a record, gives it an id from a block reserved ahead of time
(``Registry.reserve_ids``; no other process uses those ids) and queues it: no
database work on the caller's thread. A writer thread inserts what is queued in
one transaction per flush, at least every ``interval_s`` (200 ms) and as soon as
``max_batch`` (256) records wait. ``close`` (and so ``Hub.close``, and SIGTERM for
``genhub serve``) writes everything queued; a process killed with SIGKILL loses at
most what was queued since the last flush, and since each flush is one
transaction the registry never holds half of one. ``retention`` deletes rows
older than it, at start and then hourly.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
import time
from collections import deque
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from hub.errors import InvalidArgument
from hub.registry.convert import dumps
from hub.registry.orm import utcnow
from hub.registry.registry import GENERATIONS, Registry, generation_row

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.2
MAX_BATCH = 256
ID_BLOCK = 1024
PRUNE_EVERY_S = 3600.0


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str, field: str = "older_than") -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s`` or ``2w`` as a timedelta (``field`` names the option in errors)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if match is None or float(match.group(1)) <= 0:
        raise InvalidArgument(field, f"{text!r} is not an age; use a positive number and a unit, e.g. 30d, 12h, 90m")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


class GenerationLog:
    """Batched, background writer of ``registry``'s generation log."""

    def __init__(self, registry: Registry, *, interval_s: float = FLUSH_INTERVAL_S, max_batch: int = MAX_BATCH,
                 id_block: int = ID_BLOCK, retention: timedelta | None = None) -> None:
        self.registry = registry
        self.interval_s = interval_s
        self.max_batch = max_batch
        self.id_block = id_block
        self.retention = retention
        self._queue: deque[dict[str, Any]] = deque()
        self._ids: deque[range] = deque()  # reserved, not yet used, in increasing order
        self._last_id = 0  # the last id given
        # Blocks grow to id_block: a one-shot CLI call wastes few ids, a busy server makes few round trips.
        self._next_block = min(16, id_block)
        self._id_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._flush_now = False  # flush() asked to write now, whatever the batch and the interval
        self._submitted = 0  # records queued so far; flush() waits until _written reaches it
        self._written = 0
        self._progress = threading.Condition()
        self.flushes = 0  # transactions written (tests and benchmarks read it)
        self._thread = threading.Thread(target=self._run, name="genhub-generation-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # a process that exits without Hub.close (a Ray replica) still writes its records

    # -- the caller's side ----------------------------------------------------------------------

    def submit(self, version_id: int | None, *, params: dict[str, Any], **columns: Any) -> int:
        """Queue one record (``columns``: the rest of ``generation_row``'s keywords; checked now, InvalidArgument on
        bad values) and return the id it will have."""
        row = generation_row(version_id, params={}, **columns)
        row["params"] = params  # encoded to JSON by the writer thread, off the caller's
        with self._progress:  # ids enter the queue in the order they are given, whatever the callers' threads
            row["id"] = self._next_id()
            self._queue.append(row)
            self._submitted += 1
            if len(self._queue) >= self.max_batch:
                self._wake.set()
        return row["id"]

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every record submitted before this call is written; False on timeout."""
        with self._progress:
            target = self._submitted
            self._flush_now = True
            self._wake.set()
            return self._progress.wait_for(lambda: self._written >= target or not self._thread.is_alive(), timeout)

    def close(self) -> None:
        """Write what is queued and stop the writer thread (idempotent)."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=60)
        atexit.unregister(self.close)

    def _next_id(self) -> int:
        with self._id_lock:
            while self._ids and not self._ids[0]:
                self._ids.popleft()
            if not self._ids:  # only before the first block arrives, or after a burst outran the refills
                self._add_block(self._reserve())
            block = self._ids[0]
            self._ids[0] = block[1:]
            if sum(len(r) for r in self._ids) < self._next_block // 2:
                self._wake.set()  # the writer reserves the next block before this one runs out
            self._last_id = block[0]
            return block[0]

    def _add_block(self, block: range) -> None:
        """Keep the reserved ids in increasing order (the caller holds ``_id_lock``).

        Records are written in id order, so that a killed process loses only its newest ones. A submit that ran out
        of ids reserves a block while the writer may be reserving one too; the later of the two can arrive first.
        What lies below an id already given is dropped (ids may have gaps, never go back)."""
        block = range(max(block.start, self._last_id + 1), block.stop)
        if block:
            self._ids = deque(sorted([*self._ids, block], key=lambda r: r.start))

    # -- the writer thread ----------------------------------------------------------------------

    def _reserve(self) -> range:
        block = self.registry.reserve_ids(GENERATIONS, self._next_block)
        self._next_block = min(self._next_block * 2, self.id_block)
        return block

    def _run(self) -> None:
        next_prune = time.monotonic()
        self._refill_ids()  # the first block, before the first record needs it
        last_flush = time.monotonic()
        while True:
            self._wake.wait(max(0.0, last_flush + self.interval_s - time.monotonic()))
            self._wake.clear()
            self._refill_ids()
            stopping, flush, self._flush_now = self._stopping, self._flush_now, False
            if flush or stopping or len(self._queue) >= self.max_batch or time.monotonic() >= last_flush + self.interval_s:
                last_flush = time.monotonic()
                while self._queue and self._write(self._take()):
                    pass
            if self.retention is not None and time.monotonic() >= next_prune:
                self._prune()
                next_prune = time.monotonic() + PRUNE_EVERY_S
            if stopping:
                return

    def _take(self) -> list[dict[str, Any]]:
        with self._progress:
            rows = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
        for row in rows:
            if not isinstance(row["params"], str):
                try:
                    row["params"] = dumps("params", row["params"])
                except InvalidArgument as exc:  # not JSON: keep the record, say what its parameters were
                    row["params"] = dumps("params", {"unencodable": str(exc)})
        return rows

    def _write(self, rows: list[dict[str, Any]]) -> bool:
        """One transaction; False (rows queued again) when the database cannot be reached."""
        try:
            self.registry.write_generations(rows)
        except IntegrityError:  # e.g. a version that no longer exists: keep the others
            for row in rows:
                try:
                    self.registry.write_generations([row])
                except Exception:  # noqa: BLE001 - one bad record must not stop the log
                    log.exception("generation log: dropped record %d", row["id"])
        except Exception:  # noqa: BLE001 - the database is away: keep the records for the next flush
            log.exception("generation log: could not write %d record(s); retrying", len(rows))
            with self._progress:
                self._queue.extendleft(reversed(rows))
            return False  # stopping with the database away: what is queued is lost, and said so above
        self.flushes += 1
        with self._progress:
            self._written += len(rows)
            self._progress.notify_all()
        return True

    def _refill_ids(self) -> None:
        with self._id_lock:
            if self._stopping or sum(len(r) for r in self._ids) >= self._next_block // 2:
                return
        try:  # not under the lock: submit must never wait for this transaction while ids remain
            block = self._reserve()
        except Exception:  # noqa: BLE001 - submit reserves for itself if it must
            log.exception("generation log: could not reserve ids")
            return
        with self._id_lock:
            self._add_block(block)

    def _prune(self) -> None:
        assert self.retention is not None
        try:
            removed = self.registry.prune_generations(utcnow() - self.retention)
        except Exception:  # noqa: BLE001 - retention is best effort; the next round tries again
            log.exception("generation log: pruning failed")
            return
        if removed:
            log.info("generation log: pruned %d record(s) older than %s", removed, self.retention)
