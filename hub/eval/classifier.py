"""The feature classifiers image metrics are computed with: one small CNN per image dataset, shipped with weights.

The Fréchet distance, precision and recall of image models are measured in the penultimate-layer features
of a classifier trained on the same dataset (Inception features mean little on 8x8 digits). Each one ships
as ``weights/<name>.safetensors`` plus ``weights/<name>.json``: architecture, the exact training command,
seed, test accuracy and the sha256 of the weights file, which is verified on load and recorded with every
figure measured through it.

Which classifier serves which dataset (``CLASSIFIERS``):

- ``digits`` (1x8x8): the ``digits`` classifier;
- ``digits16`` (1x16x16, bilinear-upsampled digits): the same ``digits`` classifier after a 2x average
  pool back to 8x8. The digits classifier is trained with that round trip as an augmentation, and its JSON
  records its accuracy on the digits16 test split read this way; no second network to keep in step;
- ``shapes`` (3x32x32): the ``shapes`` classifier over all 48 classes (shape x colour x position).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from hub.datasets import Dataset
from hub.errors import ArtifactCorrupt, InvalidArgument, NotFound

WEIGHTS_DIR = Path(__file__).parent / "weights"
FEATURE_DIM = 64

# dataset -> (classifier name, input adapter applied before the network)
CLASSIFIERS: dict[str, tuple[str, str]] = {
    "digits": ("digits", "identity"),
    "digits16": ("digits", "avgpool2"),
    "shapes": ("shapes", "identity"),
}
ADAPTERS = ("identity", "avgpool2")

# Architectures and training settings per classifier (what ``python -m hub.eval.train_classifier`` uses).
RECIPES: dict[str, dict[str, Any]] = {
    "digits": {"widths": [32, 64], "epochs": 30, "batch_size": 64, "lr": 5e-3, "augment": ["roundtrip16"]},
    "shapes": {"widths": [16, 32, 32, 32], "epochs": 12, "batch_size": 64, "lr": 3e-3, "augment": []},
}


class FeatureNet(nn.Module):
    """Conv levels (3x3 conv + ReLU, 2x average pool between levels), a feature layer over the flattened map, logits.

    No global pooling: where a stroke or shape sits matters on 8x8 digits and on the shapes' quadrants.
    """

    def __init__(self, in_channels: int, resolution: int, num_classes: int, widths: list[int],
                 feature_dim: int = FEATURE_DIM) -> None:
        super().__init__()
        if resolution % 2 ** (len(widths) - 1):
            raise InvalidArgument("widths", f"{len(widths)} levels halve {resolution} {len(widths) - 1} times; use fewer")
        layers: list[nn.Module] = []
        prev = in_channels
        for i, width in enumerate(widths):
            if i:
                layers.append(nn.AvgPool2d(2))
            layers += [nn.Conv2d(prev, width, 3, padding=1), nn.ReLU()]
            prev = width
        self.body = nn.Sequential(*layers, nn.Flatten())
        side = resolution // 2 ** (len(widths) - 1)
        self.feature = nn.Linear(prev * side * side, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)
        self.in_channels, self.resolution = in_channels, resolution

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, C, R, R] in [-1, 1] -> [N, feature_dim], post-ReLU (like Inception's pool features)
        return F.relu(self.feature(self.body(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def adapt(images: torch.Tensor, adapter: str) -> torch.Tensor:
    """Bring a dataset's images to the classifier's input: [N, C, H, W] -> [N, C, R, R]."""
    if adapter == "identity":
        return images
    if adapter == "avgpool2":
        return F.avg_pool2d(images, 2)
    raise InvalidArgument("adapter", f"{adapter!r} is not one of {list(ADAPTERS)}")


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class FeatureClassifier:
    """A loaded, digest-verified classifier bound to one dataset's input adapter."""

    name: str
    net: FeatureNet
    info: dict[str, Any]  # the JSON shipped beside the weights
    digest: str  # sha256 of the safetensors file, as verified on load
    adapter: str = "identity"

    @torch.no_grad()
    def features_and_logits(self, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        """([N, feature_dim], [N, num_classes]) for images [N, C, H, W] in [-1, 1]."""
        if images.dim() != 4:
            raise InvalidArgument("images", f"expected [N, C, H, W], got shape {tuple(images.shape)}")
        feats, logits = [], []
        for start in range(0, images.shape[0], batch_size):
            x = adapt(images[start:start + batch_size].float().cpu(), self.adapter)
            expected = (self.net.in_channels, self.net.resolution, self.net.resolution)
            if tuple(x.shape[1:]) != expected:
                raise InvalidArgument("images", f"classifier {self.name!r} reads {list(expected)} images, got "
                                      f"{list(x.shape[1:])} after {self.adapter!r}; evaluate against the model's own dataset")
            f = self.net.features(x)
            feats.append(f)
            logits.append(self.net.head(f))
        return torch.cat(feats), torch.cat(logits)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(images)[0]

    def recognisability(self, images: torch.Tensor) -> tuple[float, list[int]]:
        """How recognisable samples are: the mean top-class probability, and how many land in each class."""
        probs = self.features_and_logits(images)[1].softmax(dim=1)
        counts = torch.bincount(probs.argmax(dim=1), minlength=probs.shape[1])
        return probs.max(dim=1).values.mean().item(), counts.tolist()

    def describe(self) -> dict[str, Any]:
        """What a metric records about the classifier it was measured with."""
        return {"classifier": self.name, "classifier_sha256": self.digest, "adapter": self.adapter,
                "feature_dim": self.info["feature_dim"], "classifier_test_accuracy": self.info["test_accuracy"]}


def classifier_name(dataset: str) -> tuple[str, str]:
    try:
        return CLASSIFIERS[dataset]
    except KeyError:
        raise NotFound(f"no feature classifier for dataset {dataset!r}; image metrics have classifiers for "
                       f"{sorted(CLASSIFIERS)}. Train one with `python -m hub.eval.train_classifier --dataset NAME` "
                       "and add it to hub.eval.classifier.CLASSIFIERS") from None


_cache: dict[tuple[str, str, str], FeatureClassifier] = {}


def load_classifier(dataset: str, weights_dir: Path = WEIGHTS_DIR) -> FeatureClassifier:
    """The classifier for ``dataset``, its weights checked against the sha256 in its JSON; cached."""
    name, adapter = classifier_name(dataset)
    key = (str(weights_dir), name, adapter)
    if key in _cache:
        return _cache[key]
    weights, meta = weights_dir / f"{name}.safetensors", weights_dir / f"{name}.json"
    if not weights.is_file() or not meta.is_file():
        raise NotFound(f"classifier {name!r} is missing from {weights_dir}; regenerate it with "
                       f"`python -m hub.eval.train_classifier --dataset {name}`")
    info = json.loads(meta.read_text())
    digest = file_digest(weights)
    if digest != info.get("sha256"):
        raise ArtifactCorrupt(f"{weights} hashes to {digest}, but {meta.name} says {info.get('sha256')}; "
                              f"restore the file or retrain with `{info.get('command', 'python -m hub.eval.train_classifier')}`")
    net = FeatureNet(info["in_channels"], info["resolution"], info["num_classes"], info["widths"], info["feature_dim"])
    net.load_state_dict(load_file(weights))
    net.eval().requires_grad_(False)
    loaded = FeatureClassifier(name, net, info, digest, adapter)
    _cache[key] = loaded
    return loaded


# -- training ---------------------------------------------------------------------------------------------------

def _augment(x: torch.Tensor, kinds: list[str], gen: torch.Generator) -> torch.Tensor:
    """Batch augmentations: ``shift1`` (random +-1 pixel roll), ``roundtrip16`` (2x bilinear up, then 2x avg pool)."""
    if "roundtrip16" in kinds:
        # what digits16 images look like once adapted: half of each batch goes through it
        mask = torch.rand(x.shape[0], generator=gen) < 0.5
        if mask.any():
            up = F.interpolate(x[mask], scale_factor=2, mode="bilinear", align_corners=False)
            x = x.clone()
            x[mask] = F.avg_pool2d(up, 2)
    if "shift1" in kinds:
        dx, dy = (int(v) for v in torch.randint(-1, 2, (2,), generator=gen))
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    return x


@torch.no_grad()
def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, adapter: str = "identity") -> float:
    net.eval()
    correct = 0
    for start in range(0, len(images), 500):
        logits = net(adapt(images[start:start + 500], adapter))
        correct += int((logits.argmax(dim=1) == labels[start:start + 500]).sum())
    return correct / len(images)


def train_classifier(train: Dataset, test: Dataset, *, widths: list[int], epochs: int, batch_size: int, lr: float,
                     augment: list[str], seed: int = 0, log: Any = None) -> tuple[FeatureNet, dict[str, Any]]:
    """Train a FeatureNet on ``train``'s labels (AdamW, cosine lr); return it and its facts (accuracy, time)."""
    if train.kind != "image" or train.labels is None:
        raise InvalidArgument("dataset", f"{train.name!r} is not a labelled image dataset; classifiers need images and labels")
    c, h, w = train.sample_shape
    if h != w:
        raise InvalidArgument("dataset", f"{train.name!r} images are {h}x{w}; the classifier needs square images")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    num_classes = train.num_classes or int(train.labels.max()) + 1
    net = FeatureNet(c, h, num_classes, widths)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    started = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(train), generator=gen)
        total = 0.0
        for start in range(0, len(train), batch_size):
            idx = order[start:start + batch_size]
            x = _augment(train.data[idx], augment, gen)
            loss = F.cross_entropy(net(x), train.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs}: loss {total / len(train):.4f}")
    net.eval()
    facts = {
        "in_channels": c, "resolution": h, "num_classes": num_classes, "widths": list(widths), "feature_dim": FEATURE_DIM,
        "train_accuracy": accuracy(net, train.data, train.labels), "test_accuracy": accuracy(net, test.data, test.labels),
        "train_time_s": round(time.perf_counter() - started, 1), "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "augment": list(augment), "seed": seed, "parameters": sum(p.numel() for p in net.parameters()),
    }
    return net, facts


def save_classifier(net: FeatureNet, facts: dict[str, Any], name: str, weights_dir: Path = WEIGHTS_DIR) -> Path:
    """Write ``<name>.safetensors`` then ``<name>.json`` (with the weights' sha256) into ``weights_dir``."""
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata={"classifier": name})
    path.chmod(0o644)  # shipped in the package: readable by everyone
    info = {"name": name, **facts, "sha256": file_digest(path)}
    (weights_dir / f"{name}.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    for key in [k for k in _cache if k[1] == name]:
        del _cache[key]
    return path
