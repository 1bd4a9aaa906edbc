"""The shipped feature classifiers: weights match their digest and reach their stated accuracy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hub.builtin.datasets import load_digits, load_shapes
from hub.errors import ArtifactCorrupt, NotFound
from hub.eval.classifier import CLASSIFIERS, WEIGHTS_DIR, accuracy, file_digest, load_classifier


@pytest.mark.parametrize("name", ["digits", "shapes"])
def test_shipped_classifier_verifies_and_is_small(name: str) -> None:
    info = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
    weights = WEIGHTS_DIR / f"{name}.safetensors"
    assert file_digest(weights) == info["sha256"]
    assert weights.stat().st_size < 1_000_000
    assert info["command"].startswith("python -m hub.eval.train_classifier --dataset ")
    assert info["seed"] == 0 and info["test_accuracy"] > 0.95
    clf = load_classifier(name)
    assert clf.digest == info["sha256"] and clf.describe()["classifier_sha256"] == info["sha256"]


@pytest.mark.parametrize(("dataset", "key"), [("digits", "test_accuracy"), ("digits16", "test_accuracy_digits16"),
                                              ("shapes", "test_accuracy")])
def test_classifier_reaches_its_stated_accuracy_on_the_test_split(dataset: str, key: str) -> None:
    clf = load_classifier(dataset)
    test = load_shapes("test") if dataset == "shapes" else load_digits("test", 16 if dataset == "digits16" else 8)
    measured = accuracy(clf.net, test.data, test.labels, clf.adapter)
    assert measured >= clf.info[key] - 2 / len(test)  # the same, up to a rounding flip or two on another CPU
    feats, logits = clf.features_and_logits(test.data[:7])
    assert feats.shape == (7, clf.info["feature_dim"]) and logits.shape == (7, clf.info["num_classes"])


def test_a_tampered_weights_file_is_refused(tmp_path: Path) -> None:
    for suffix in (".safetensors", ".json"):
        shutil.copy(WEIGHTS_DIR / f"digits{suffix}", tmp_path / f"digits{suffix}")
    data = bytearray((tmp_path / "digits.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "digits.safetensors").write_bytes(bytes(data))
    with pytest.raises(ArtifactCorrupt, match="retrain with `python -m hub.eval.train_classifier --dataset digits`"):
        load_classifier("digits", weights_dir=tmp_path)


def test_datasets_without_a_classifier_say_how_to_get_one() -> None:
    assert set(CLASSIFIERS) == {"digits", "digits16", "shapes"}
    with pytest.raises(NotFound, match="train_classifier"):
        load_classifier("cifar10")
