"""bench/serving.py runs end to end and prints its tables (a smoke run: seconds, numbers meaningless)."""

from __future__ import annotations

import importlib.util
import re

import pytest

from tests.server.harness import REPO


def test_bench_prints_latency_and_throughput_tables(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_serving", REPO / "bench" / "serving.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--quick", "--server", "thread", "--clients", "1,8"])
    table = capsys.readouterr().out
    assert "(a) latency of one request" in table and "gRPC loopback, batching off" in table
    rows = [[float(x) for x in re.findall(r"\d+(?:\.\d+)?", line)] for line in table.split("(b)")[1].split("(c)")[0].splitlines()[2:]]
    assert [row[0] for row in rows if row] == [1, 8]
    assert all(row[1] > 0 and row[3] > 0 for row in rows if row)  # images/s with batching off and on
    both = [[float(x) for x in re.findall(r"\d+(?:\.\d+)?", line)] for line in table.split("(c)")[1].split("(d)")[0].splitlines()[2:]]
    assert [row[0] for row in both if row] == [1, 8]
    assert all(row[1] > 0 and row[3] > 0 for row in both if row)  # images/s through hub.v1 and through the open protocol
    on, off, ratio = (float(x) for x in re.findall(r"\d+(?:\.\d+)?", table.split("(d)")[1].splitlines()[2]))
    assert on > 0 and off > 0 and ratio == pytest.approx(on / off, rel=0.05)  # the generation log's cost (from 1-decimal figures)
