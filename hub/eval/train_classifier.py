"""Train and ship a feature classifier: ``python -m hub.eval.train_classifier --dataset digits``.

Writes ``hub/eval/weights/<name>.safetensors`` and ``<name>.json`` (the exact command, seed, accuracy and
the weights' sha256). Deterministic for a seed on a CPU with one thread (``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from hub.builtin.datasets import load_digits, load_shapes
from hub.datasets import Dataset
from hub.eval.classifier import RECIPES, WEIGHTS_DIR, accuracy, save_classifier, train_classifier


def _splits(name: str) -> tuple[Dataset, Dataset]:
    if name == "digits":
        return load_digits("train", 8), load_digits("test", 8)
    return load_shapes("train"), load_shapes("test")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(RECIPES), help="which classifier to train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="default: the recipe's")
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="folder for the .safetensors and .json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # determinism, and no OpenMP thrashing on shared cores
    recipe = dict(RECIPES[args.dataset])
    if args.epochs is not None:
        recipe["epochs"] = args.epochs
    train, test = _splits(args.dataset)
    net, facts = train_classifier(train, test, seed=args.seed, log=lambda line: print(line, flush=True), **recipe)
    if args.dataset == "digits":  # how it reads digits16 (through the 2x average pool)
        facts["test_accuracy_digits16"] = accuracy(net, load_digits("test", 16).data, load_digits("test", 16).labels, "avgpool2")
    command = "python -m hub.eval.train_classifier " + shlex.join(sys.argv[1:] if argv is None else argv)
    facts.update(command=command, torch=torch.__version__)
    path = save_classifier(net, facts, args.dataset, args.out)
    print(f"wrote {path}: test accuracy {facts['test_accuracy']:.4f}, {facts['parameters']} parameters, "
          f"{facts['train_time_s']} s")


if __name__ == "__main__":
    main()
