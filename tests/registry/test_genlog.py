"""The batched generation log writer: ids before rows, one transaction per flush, flush on close, retention."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import update

from hub.errors import InvalidArgument
from hub.registry import Registry
from hub.registry.genlog import GenerationLog, parse_age
from hub.registry.registry import GENERATIONS
from hub.registry.orm import Generation, utcnow
from tests.registry.conftest import fake_digest


def record(log: GenerationLog, version_id: int, seed: int, status: str = "ok") -> int:
    return log.submit(version_id, seed=seed, params={"steps": 4}, num_samples=1, duration_s=0.01, status=status,
                      artifact_digest=fake_digest("v1"))


def test_records_get_ids_at_once_and_rows_in_batched_transactions(digits: Registry) -> None:
    version = digits.resolve("ddpm-digits:1")
    log = GenerationLog(digits, interval_s=3600, max_batch=256)  # only a full batch (or flush) writes
    try:
        ids = [record(log, version.id, seed) for seed in range(600)]
        assert len(set(ids)) == 600
        log.flush()
        assert log.flushes == 3  # 256 + 256 + 88: one transaction each
    finally:
        log.close()
    rows = {g.id: g for g in digits.generations(limit=1000)}
    assert set(rows) == set(ids)
    assert [rows[i].seed for i in ids] == list(range(600))  # every record, under the id it was given
    assert rows[ids[0]].ref == "ddpm-digits:1" and rows[ids[0]].params == {"steps": 4}


def test_close_writes_what_is_queued(digits: Registry) -> None:
    version = digits.resolve("ddpm-digits:1")
    log = GenerationLog(digits, interval_s=3600)
    ids = [record(log, version.id, seed, status="cancelled") for seed in range(5)]
    assert digits.generations(limit=10) == []  # nothing written yet: no database work on the caller's side
    log.close()
    assert sorted(g.id for g in digits.generations(limit=10)) == sorted(ids)


def test_two_writers_never_share_an_id(digits: Registry, db_url: str) -> None:
    version = digits.resolve("ddpm-digits:1")
    with Registry(db_url) as other:  # as another server process would
        first, second = GenerationLog(digits, id_block=8), GenerationLog(other, id_block=8)
        ids = [record(log, version.id, seed) for seed in range(40) for log in (first, second)]
        direct = digits.log_generation(version.id, seed=None, params={}, num_samples=1, duration_s=0.0, status="ok")
        first.close()
        second.close()
    assert len(set(ids + [direct])) == 81
    assert len(digits.generations(limit=100)) == 81


def test_ids_are_queued_in_increasing_order_so_a_kill_loses_only_the_newest(digits: Registry) -> None:
    version = digits.resolve("ddpm-digits:1")
    log = GenerationLog(digits, interval_s=3600, max_batch=100_000, id_block=4)  # nothing written until close
    try:
        # Many callers at once, with blocks so small that submits keep reserving beside the writer's refills.
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda seed: record(log, version.id, seed), range(400)))
        queued = [row["id"] for row in log._queue]
        assert queued == sorted(queued) and len(set(queued)) == 400
        log.flush()  # the writer has refilled and is idle: what follows is not raced by it
        # A submit's own reservation can land before the writer's older one: ids still never go back.
        low, high = digits.reserve_ids(GENERATIONS, 4), digits.reserve_ids(GENERATIONS, 4)
        with log._id_lock:
            log._ids.clear()
            log._add_block(high)
        given = [record(log, version.id, seed) for seed in range(2)]
        with log._id_lock:
            log._add_block(low)
        given += [record(log, version.id, seed) for seed in range(10)]
        assert given[:2] == [high[0], high[1]] and not set(given) & set(low)
        assert given == sorted(given) and len(set(given)) == 12
    finally:
        log.close()


def test_a_bad_record_fails_at_submit_and_a_vanished_version_alone_is_dropped(digits: Registry) -> None:
    version = digits.resolve("ddpm-digits:1")
    log = GenerationLog(digits, interval_s=3600)
    try:
        with pytest.raises(InvalidArgument, match="status"):
            log.submit(version.id, seed=1, params={}, num_samples=1, duration_s=0.0, status="")
        good = record(log, version.id, 1)
        record(log, 999_999, 2)  # no such version: the foreign key rejects it at flush
        also_good = record(log, version.id, 3)
        log.flush()
    finally:
        log.close()
    assert sorted(g.id for g in digits.generations(limit=10)) == sorted([good, also_good])


def test_prune_and_retention(digits: Registry, db_url: str) -> None:
    version = digits.resolve("ddpm-digits:1")
    ids = [digits.log_generation(version.id, seed=i, params={}, num_samples=1, duration_s=0.0, status="ok")
           for i in range(4)]
    with digits._session(write=True) as s:  # age two records by 40 days
        s.execute(update(Generation).where(Generation.id.in_(ids[:2])).values(created_at=utcnow() - timedelta(days=40)))
    assert digits.prune_generations(utcnow() - timedelta(days=60)) == 0
    assert digits.prune_generations(utcnow() - parse_age("30d")) == 2
    assert sorted(g.id for g in digits.generations()) == sorted(ids[2:])
    with digits._session(write=True) as s:
        s.execute(update(Generation).where(Generation.id == ids[2]).values(created_at=utcnow() - timedelta(days=40)))
    GenerationLog(digits, retention=timedelta(days=30)).close()  # a writer with retention prunes when it starts
    assert [g.id for g in digits.generations()] == [ids[3]]


@pytest.mark.parametrize("text, seconds", [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("1.5s", 1.5), ("2w", 1209600)])
def test_parse_age(text: str, seconds: float) -> None:
    assert parse_age(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "30", "d", "-3d", "0d", "30 days", "3y"])
def test_parse_age_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument, match="older_than: .* is not an age; use a positive number and a unit"):
        parse_age(text)
