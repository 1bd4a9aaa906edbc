"""bench/model_table.py: the README section between its markers, and the table's rows."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

from hub.core import Hub
from hub.eval.table import models_table

REPO = Path(__file__).resolve().parents[2]


def _bench() -> object:
    spec = importlib.util.spec_from_file_location("bench_model_table", REPO / "bench" / "model_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_section_is_replaced_between_the_markers() -> None:
    bench = _bench()
    start, end = bench.START, bench.END  # type: ignore[attr-defined]
    once = bench.replace_section(f"# x\n\n{start}\n\n## next\n", "TABLE 1")  # type: ignore[attr-defined]
    assert once == f"# x\n\n{start}\n\nTABLE 1\n\n{end}\n\n## next\n"
    twice = bench.replace_section(once, "TABLE 2")  # type: ignore[attr-defined]
    assert twice == once.replace("TABLE 1", "TABLE 2")
    readme = (REPO / "README.md").read_text()
    assert readme.count(start) == 1 and readme.count(end) == 1
    with pytest.raises(SystemExit, match="marker"):
        bench.replace_section("no markers", "T")  # type: ignore[attr-defined]


def test_table_rows_show_quality_floor_and_speed(hub: Hub) -> None:
    hub.registry.ensure_model("m", "ddpm", "test")
    ref = hub.registry.add_version("m", config={}, artifact_digest=hashlib.sha256(b"m").hexdigest(), dataset="digits",
                                   tags=["pretrained"]).ref
    for name, value in (("fd", 31.25), ("precision", 0.8), ("recall", 0.6), ("images_per_s_batch1", 12.0),
                        ("latency_p50_ms_batch1", 80.0), ("latency_p99_ms_batch1", 95.0)):
        hub.registry.add_metric(ref, name, value, data="digits:train", hardware="cpu x1", sampler="ddim", steps=50)
    hub.registry.add_metric(ref, "fd_floor", 20.0, data="digits:test")
    hub.registry.add_metric(ref, "images_per_s_batchmax", 300.0, data="digits", hardware="cpu x1", details={"batch": 64},
                            sampler="ddim", steps=50)
    # a speed-only measurement with other settings is a row of its own (the README's DDPM at 1000 steps)
    hub.registry.add_metric(ref, "latency_p50_ms_batch1", 1500.0, data="digits", hardware="cpu x1", sampler="ddpm", steps=1000)
    table = models_table(hub, [ref])
    rows = [line for line in table.splitlines() if line.startswith("| m:1")]
    assert len(rows) == 2
    row = next(r for r in rows if "ddim, 50 steps" in r)
    assert "FD 31.2, P 0.80, R 0.60" in row and "FD 20.0" in row
    assert "300.0 (b64)" in row and "80.0 / 95.0" in row
    slow = next(r for r in rows if "ddpm, 1000 steps" in r)
    assert "1,500.0 / -" in slow and "| FD 20.0 |" in slow  # no quality measured there; the floor is the data's
    assert "Speed measured on cpu x1." in table
    assert models_table(hub, []).startswith("No bundled models")
