"""Resolving references, aliases, lineage, paging and metrics."""

from __future__ import annotations

import hashlib
import re

import pytest

from hub.errors import InvalidArgument, NotFound
from hub.registry import Ref, Registry, parse_ref


def fake_digest(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def test_parse_ref() -> None:
    assert parse_ref("ddpm-digits") == Ref("ddpm-digits", alias="latest")
    assert parse_ref("ddpm-digits:12") == Ref("ddpm-digits", version=12)
    assert parse_ref("ddpm-digits@prod") == Ref("ddpm-digits", alias="prod")
    assert str(parse_ref("m:3")) == "m:3" and str(parse_ref("m")) == "m@latest"


@pytest.mark.parametrize(
    "ref", ["", ":3", "@prod", "m:", "m@", "m:0", "m:-1", "m:1.5", "m:3:4", "m@Prod", "m@1x", "m:3@prod", " m", "a b"]
)
def test_malformed_refs(ref: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_ref(ref)
    assert info.value.field == "model"
    assert repr(ref) in str(info.value) and "NAME:VERSION" in str(info.value)


def test_resolve_rejects_malformed_refs(digits: Registry) -> None:
    with pytest.raises(InvalidArgument, match="model: 'ddpm-digits:0': version '0' is not a positive integer"):
        digits.resolve("ddpm-digits:0")


def test_version_word_hints_at_alias(digits: Registry) -> None:
    with pytest.raises(InvalidArgument, match=re.escape("did you mean ddpm-digits@latest?")):
        digits.resolve("ddpm-digits:latest")


def test_resolve_forms(digits: Registry) -> None:
    assert digits.resolve("ddpm-digits").version == 3
    assert digits.resolve("ddpm-digits@latest").version == 3
    v2 = digits.resolve("ddpm-digits:2")
    assert (v2.version, v2.artifact_digest, v2.dataset, v2.parent) == (2, fake_digest("v2"), "digits", "ddpm-digits:1")
    digits.set_alias("ddpm-digits", "prod", 2)
    assert digits.resolve("ddpm-digits@prod") == digits.resolve("ddpm-digits:2")
    assert digits.resolve("ddpm-digits:2").aliases == ("prod",)


def test_not_found_messages_list_what_exists(digits: Registry) -> None:
    digits.set_alias("ddpm-digits", "prod", 1)
    available = "available versions: 1-3; aliases: latest -> 3, prod -> 1"
    with pytest.raises(NotFound, match=re.escape(f"model 'ddpm-digits' has no version 7; {available}")):
        digits.resolve("ddpm-digits:7")
    with pytest.raises(NotFound, match=re.escape(f"model 'ddpm-digits' has no alias 'best'; {available}")):
        digits.resolve("ddpm-digits@best")
    with pytest.raises(NotFound, match=re.escape("no model named 'ddpm-digit'; did you mean ddpm-digits?")):
        digits.resolve("ddpm-digit")
    with pytest.raises(NotFound, match=re.escape("no model named 'zzz'; models: ddpm-digits")):
        digits.resolve("zzz:1")
    digits.ensure_model("empty", "ddpm", "genhub-ddpm")
    with pytest.raises(NotFound, match="model 'empty' has no alias 'latest'; it has no versions yet"):
        digits.resolve("empty")


def test_empty_registry_message(registry: Registry) -> None:
    with pytest.raises(NotFound, match="the registry has no models yet"):
        registry.resolve("anything")


def test_aliases(digits: Registry) -> None:
    assert digits.set_alias("ddpm-digits", "prod", 1).aliases == ("prod",)
    assert digits.set_alias("ddpm-digits", "prod", 2).aliases == ("prod",)  # moved
    assert digits.resolve("ddpm-digits:1").aliases == ()
    assert digits.set_alias("ddpm-digits", "latest", 1).aliases == ("latest",)  # latest may be set by hand
    assert digits.resolve("ddpm-digits").version == 1
    new = digits.add_version("ddpm-digits", config={}, artifact_digest=fake_digest("v4"), dataset="digits")
    assert digits.resolve("ddpm-digits") == new  # ... and moves again on add_version
    assert digits.resolve("ddpm-digits@prod").version == 2
    digits.delete_alias("ddpm-digits", "prod")
    with pytest.raises(NotFound, match="no alias 'prod'"):
        digits.resolve("ddpm-digits@prod")
    with pytest.raises(NotFound, match="no alias 'prod'"):
        digits.delete_alias("ddpm-digits", "prod")
    with pytest.raises(InvalidArgument, match="'latest' is managed by the registry"):
        digits.delete_alias("ddpm-digits", "latest")
    for bad in ["Prod", "1st", "", "a b", "a:b", "a@b"]:
        with pytest.raises(InvalidArgument, match="not a valid alias"):
            digits.set_alias("ddpm-digits", bad, 1)
    with pytest.raises(NotFound, match="has no version 9; available versions: 1-4"):
        digits.set_alias("ddpm-digits", "prod", 9)
    with pytest.raises(InvalidArgument, match="versions are integers from 1"):
        digits.set_alias("ddpm-digits", "prod", 0)


def test_lineage(digits: Registry) -> None:
    assert [v.ref for v in digits.lineage("ddpm-digits")] == ["ddpm-digits:3", "ddpm-digits:2", "ddpm-digits:1"]
    assert [v.ref for v in digits.lineage("ddpm-digits:1")] == ["ddpm-digits:1"]
    digits.ensure_model("ddpm-digits-small", "ddpm", "genhub-ddpm")
    child = digits.add_version(
        "ddpm-digits-small", config={}, artifact_digest=fake_digest("s"), dataset="digits", parent="ddpm-digits:2"
    )
    assert child.parent == "ddpm-digits:2"
    assert [v.ref for v in digits.lineage("ddpm-digits-small")] == [
        "ddpm-digits-small:1",
        "ddpm-digits:2",
        "ddpm-digits:1",
    ]


def test_paging(registry: Registry) -> None:
    names = [f"model-{i:02d}" for i in range(23)]
    for name in reversed(names):
        registry.ensure_model(name, "ddpm", "genhub-ddpm")
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page, token = registry.list_models(page_size=10, page_token=token)
        seen += [m.name for m in page]
        pages += 1
        if not token:
            break
    assert seen == names and pages == 3
    exact, end = registry.list_models(page_size=23)
    assert [m.name for m in exact] == names and end == ""
    first, token = registry.list_models(page_size=5)
    registry.ensure_model("model-00a", "ddpm", "genhub-ddpm")  # a name inserted behind the cursor
    second, _ = registry.list_models(page_size=5, page_token=token)
    assert [m.name for m in second] == names[5:10]
    for size in (0, 1001, -1):
        with pytest.raises(InvalidArgument, match="page_size: .* out of range; use 1 to 1000"):
            registry.list_models(page_size=size)
    with pytest.raises(InvalidArgument, match="page_token"):
        registry.list_models(page_token="not-a-token")


def test_list_models_counts_versions(digits: Registry) -> None:
    digits.ensure_model("empty", "gan", "genhub-gan")
    models, _ = digits.list_models()
    assert [(m.name, m.latest_version, m.num_versions) for m in models] == [("ddpm-digits", 3, 3), ("empty", None, 0)]


def test_metrics(digits: Registry) -> None:
    v2 = digits.resolve("ddpm-digits:2")
    by_ref = digits.add_metric(
        "ddpm-digits:2", "fid", 10.5, data="digits:test", num_samples=512, hardware="cpu", sampler="ddim", steps=25,
        details={"feature": "pixels"},
    )  # fmt: skip
    by_id = digits.add_metric(v2.id, "precision", 0.8, data="digits:test")
    assert by_ref.ref == by_id.ref == "ddpm-digits:2"
    assert (by_ref.hardware, by_ref.details) == ("cpu", {"feature": "pixels"})
    assert [(m.name, m.value) for m in digits.metrics("ddpm-digits:2")] == [("fid", 10.5), ("precision", 0.8)]
    assert digits.metrics("ddpm-digits") == []
    with pytest.raises(InvalidArgument, match="'fid' has value inf; record a finite number"):
        digits.add_metric("ddpm-digits", "fid", float("inf"), data="digits:test")
    with pytest.raises(InvalidArgument, match="does not say what data"):
        digits.add_metric("ddpm-digits", "fid", 1.0, data="")
    with pytest.raises(NotFound, match="no model version with id 999"):
        digits.add_metric(999, "fid", 1.0, data="digits:test")
