"""Registry CRUD: plugins, models, versions, training runs, generations, consistency."""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timezone
from pathlib import Path

import pytest
import torch

from hub.artifacts import ArtifactStore
from hub.errors import AlreadyExists, InvalidArgument, NotFound
from hub.registry import ModelRecord, Registry, VersionRecord


def fake_digest(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def test_sync_plugins_is_an_idempotent_upsert(registry: Registry) -> None:
    first = registry.sync_plugins(
        [("genhub-ddpm", "0.1.0", "loaded", None), ("broken", "1.0", "failed", "ImportError")]
    )
    again = registry.sync_plugins(
        [("genhub-ddpm", "0.1.0", "loaded", None), ("broken", "1.0", "failed", "ImportError")]
    )
    assert again == first  # same rows, same timestamps
    assert [(p.name, p.status, p.error) for p in first] == [
        ("broken", "failed", "ImportError"),
        ("genhub-ddpm", "loaded", None),
    ]
    updated = registry.sync_plugins([("broken", "1.1", "loaded", None)])
    assert [(p.name, p.version, p.status, p.error) for p in updated] == [
        ("broken", "1.1", "loaded", None),
        ("genhub-ddpm", "0.1.0", "loaded", None),  # rows not mentioned are kept
    ]
    assert updated[0].updated_at >= first[0].updated_at
    with pytest.raises(InvalidArgument, match="'broken' has status 'ok'; use one of loaded, failed, disabled"):
        registry.sync_plugins([("broken", "1.1", "ok", None)])


def test_ensure_model(registry: Registry) -> None:
    model = registry.ensure_model("ddpm-digits", "ddpm", "genhub-ddpm", "Diffusion on digits")
    assert isinstance(model, ModelRecord)
    assert (model.name, model.family, model.plugin, model.description) == (
        "ddpm-digits",
        "ddpm",
        "genhub-ddpm",
        "Diffusion on digits",
    )
    assert model.latest_version is None and model.num_versions == 0
    assert model.created_at.tzinfo is timezone.utc
    assert registry.ensure_model("ddpm-digits", "ddpm", "genhub-ddpm") == model
    assert registry.get_model("ddpm-digits") == model
    with pytest.raises(AlreadyExists, match="already exists with family 'ddpm', not 'gan'"):
        registry.ensure_model("ddpm-digits", "gan", "genhub-gan")
    with pytest.raises(InvalidArgument, match="not a valid model name"):
        registry.ensure_model("bad name", "ddpm", "genhub-ddpm")
    with pytest.raises(InvalidArgument, match="family"):
        registry.ensure_model("ok", "", "genhub-ddpm")


def test_add_version_in_one_transaction(registry: Registry) -> None:
    registry.ensure_model("ddpm-digits", "ddpm", "genhub-ddpm")
    started = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    v1 = registry.add_version(
        "ddpm-digits",
        config={"channels": 8, "betas": [0.1, 0.2]},
        artifact_digest=fake_digest("v1"),
        dataset="digits",
        tags=["baseline", "cpu", "baseline"],
        card="# ddpm-digits\n",
        training_run={
            "command": "genhub train ddpm-digits",
            "seed": 2**62,
            "steps": 100,
            "wall_time_s": 12.5,
            "losses": [1.0, 0.5],
            "hardware": "cpu",
            "started_at": started,
            "finished_at": "2024-05-01T12:00:12.5+00:00",
        },
        metrics=[{"name": "fid", "value": 12.3, "num_samples": 1000, "sampler": "ddim", "steps": 50}],
    )
    assert isinstance(v1, VersionRecord)
    assert (v1.model, v1.family, v1.version, v1.ref) == ("ddpm-digits", "ddpm", 1, "ddpm-digits:1")
    assert v1.config == {"channels": 8, "betas": [0.1, 0.2]}
    assert v1.tags == ("baseline", "cpu") and v1.card == "# ddpm-digits\n"
    assert v1.aliases == ("latest",) and v1.parent is None
    (run,) = registry.training_runs("ddpm-digits:1")
    assert (run.command, run.seed, run.steps, run.wall_time_s, run.losses) == (
        "genhub train ddpm-digits",
        2**62,
        100,
        12.5,
        (1.0, 0.5),
    )
    assert run.started_at == started and run.finished_at is not None and run.ref == "ddpm-digits:1"
    (fid,) = registry.metrics("ddpm-digits")
    assert (fid.name, fid.value, fid.data, fid.num_samples, fid.sampler, fid.steps) == (
        "fid",
        12.3,
        "digits",  # defaults to the version's dataset
        1000,
        "ddim",
        50,
    )

    v2 = registry.add_version("ddpm-digits", config={}, artifact_digest=fake_digest("v2"), dataset="digits")
    assert v2.version == 2 and v2.aliases == ("latest",)
    assert registry.resolve("ddpm-digits:1").aliases == ()
    assert registry.get_model("ddpm-digits").latest_version == 2
    assert registry.training_runs("ddpm-digits:2") == [] and registry.metrics("ddpm-digits:2") == []


def test_add_version_failure_changes_nothing(digits: Registry) -> None:
    before = digits.list_versions("ddpm-digits")
    with pytest.raises(NotFound, match="no version 9"):
        digits.add_version(
            "ddpm-digits", config={}, artifact_digest=fake_digest("x"), dataset="digits", parent="ddpm-digits:9"
        )
    with pytest.raises(NotFound, match="no model named 'nope'"):
        digits.add_version("nope", config={}, artifact_digest=fake_digest("x"), dataset="digits")
    with pytest.raises(InvalidArgument, match="finite"):
        digits.add_version(
            "ddpm-digits",
            config={},
            artifact_digest=fake_digest("x"),
            dataset="digits",
            metrics=[{"name": "fid", "value": math.nan}],
        )
    with pytest.raises(InvalidArgument, match=r"unknown key\(s\) \['lr'\]"):
        digits.add_version(
            "ddpm-digits", config={}, artifact_digest=fake_digest("x"), dataset="d", training_run={"lr": 1}
        )
    with pytest.raises(InvalidArgument, match="JSON"):
        digits.add_version("ddpm-digits", config={"t": torch.zeros(1)}, artifact_digest=fake_digest("x"), dataset="d")
    with pytest.raises(InvalidArgument, match="64 hex"):
        digits.add_version("ddpm-digits", config={}, artifact_digest="abc", dataset="digits")
    assert digits.list_versions("ddpm-digits") == before
    assert digits.resolve("ddpm-digits").version == 3


def test_list_versions_and_find_by_digest(digits: Registry) -> None:
    versions = digits.list_versions("ddpm-digits")
    assert [v.version for v in versions] == [1, 2, 3]
    assert [v.parent for v in versions] == [None, "ddpm-digits:1", "ddpm-digits:2"]
    found = digits.find_version_by_digest("ddpm-digits", fake_digest("v2"))
    assert found is not None and found.version == 2
    assert digits.find_version_by_digest("ddpm-digits", fake_digest("none")) is None
    assert digits.find_version_by_digest("other-model", fake_digest("v2")) is None
    assert digits.get_version(found.id) == found
    with pytest.raises(NotFound, match="no model version with id 999"):
        digits.get_version(999)


def test_generations_are_logged(digits: Registry) -> None:
    v3 = digits.resolve("ddpm-digits")
    first = digits.log_generation(
        v3.id, seed=7, params={"steps": 50, "sampler": "ddim"}, num_samples=4, duration_s=0.25, status="ok"
    )
    second = digits.log_generation(
        None, seed=None, params={}, num_samples=1, duration_s=0.0, status="error", error="NotFound: no model"
    )
    assert second > first
    newest = digits.generations(limit=10)
    assert [g.id for g in newest] == [second, first]
    assert newest[0].ref is None and newest[0].error == "NotFound: no model"
    assert newest[1].ref == "ddpm-digits:3" and newest[1].params == {"sampler": "ddim", "steps": 50}
    assert newest[1].artifact_digest == v3.artifact_digest and newest[0].artifact_digest is None
    assert [g.id for g in digits.generations(model="ddpm-digits")] == [first]
    assert len(digits.generations(limit=1)) == 1
    with pytest.raises(InvalidArgument, match="limit"):
        digits.generations(limit=0)
    with pytest.raises(NotFound, match="no model version with id 999"):
        digits.log_generation(999, seed=1, params={}, num_samples=1, duration_s=0.1, status="ok")


def test_check_consistency(registry: Registry, tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    good = store.put({"w": torch.ones(4)})
    bad = store.put({"w": torch.zeros(4)})
    registry.ensure_model("m", "ddpm", "p")
    for digest in (good, bad, fake_digest("never stored")):
        registry.add_version("m", config={}, artifact_digest=digest, dataset="d")
    missing = f"m:3: artifact {fake_digest('never stored')} is missing from {store.root}; import its weights again"
    assert registry.check_consistency(store) == [missing]
    path = store.path(bad)
    path.write_bytes(path.read_bytes()[:-1] + b"\x01")
    problems = registry.check_consistency(store)
    assert len(problems) == 2
    assert problems[0] == (f"m:2: artifact {path} does not hash to {bad}; delete the file and import the weights again")
    assert problems[1] == missing
    registry.add_version("m", config={}, artifact_digest=good, dataset="d")  # shared digests are fine
    path.unlink()
    store.put({"w": torch.zeros(4)})
    assert len(registry.check_consistency(store)) == 1
