"""Regenerate the Python gRPC stubs of every proto package in protos/.

    python scripts/gen_protos.py            # rewrite hub/v1/ and hub/inference/
    python scripts/gen_protos.py --check    # exit 1 if a stub folder is not what the protos generate

The stubs are generated code: never edit them by hand, change the .proto and rerun this.
tests/server/test_protos.py runs the --check path, so a stale stub fails CI.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
DEFAULT_POOL = "_descriptor_pool.Default()"
PRIVATE_POOL = "_descriptor_pool.DescriptorPool()"


class Package(NamedTuple):
    """One proto package: its folder under protos/ and the Python package its stubs go to (inside hub/)."""

    proto_dir: str  # under protos/
    python_dir: str  # under the repository root; the generated imports read "from <python_dir as dots> import ..."
    source: str  # what the folder's README says the protos are
    private_pool: bool = False  # register the descriptors in a pool of their own instead of protobuf's default one

    def init_text(self) -> str:
        return f'"""Generated gRPC stubs for {self.source}. Do not edit: run scripts/gen_protos.py."""\n'

    def readme_text(self) -> str:
        return (f"# {self.python_dir}: generated code\n\nEverything here is generated from `protos/{self.proto_dir}/*.proto` "
                "by `python scripts/gen_protos.py`.\nDo not edit these files by hand: change the protos and regenerate. "
                "`tests/server/test_protos.py`\nfails when they are out of date.\n")


PACKAGES = (
    Package("hub/v1", "hub/v1", "package hub.v1"),
    # The Open Inference Protocol's package is "inference"; its stubs live inside hub so Ray Serve actors import them.
    # Its descriptors go into a private pool: tritonclient and KServe's client register the same "inference.*" names
    # in the default pool, and a process that holds both (a test, a notebook) must be able to import them.
    Package("inference", "hub/inference", "package inference (the Open Inference Protocol)", private_pool=True),
)


def proto_files(package: Package) -> list[Path]:
    return sorted((PROTO_ROOT / package.proto_dir).glob("*.proto"))


def generate_package(package: Package, out_root: Path) -> Path:
    """Run protoc (grpc_tools) for one package into ``out_root``; return the folder it filled."""
    from grpc_tools import protoc  # grpcio-tools: a development dependency only

    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    target = out_root / package.python_dir
    target.mkdir(parents=True, exist_ok=True)
    # protos/<proto_dir> is seen as <python_dir>, so generated imports read "from hub.inference import ...".
    args = [
        "grpc_tools.protoc",
        f"-I{package.python_dir}={PROTO_ROOT / package.proto_dir}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *(f"{package.python_dir}/{p.name}" for p in proto_files(package)),
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}; see its message above")
    if package.private_pool:
        for module in target.glob("*_pb2.py"):
            text = module.read_text()
            if DEFAULT_POOL not in text:
                raise SystemExit(f"{module.name}: no {DEFAULT_POOL!r} to replace; has protoc's output changed?")
            module.write_text(text.replace(DEFAULT_POOL, PRIVATE_POOL))
    (target / "__init__.py").write_text(package.init_text())
    (target / "README.md").write_text(package.readme_text())
    return target


def generate(out_root: Path) -> list[tuple[Path, Path]]:
    """Generate every package into ``out_root``; returns (generated folder, committed folder) pairs."""
    return [(generate_package(p, out_root), ROOT / p.python_dir) for p in PACKAGES]


def managed_files(directory: Path) -> set[str]:
    """Names of the files this script owns in ``directory``."""
    if not directory.is_dir():
        return set()
    return {
        p.name
        for p in directory.iterdir()
        if p.is_file() and (p.name.endswith(GENERATED_SUFFIXES) or p.name in ("__init__.py", "README.md"))
    }


def differences(generated: Path, committed: Path) -> list[str]:
    """File names that differ, are missing, or are left over; empty when the stubs are current."""
    wanted, have = managed_files(generated), managed_files(committed)
    problems = [f"missing {name}" for name in sorted(wanted - have)]
    problems += [f"stale leftover {name}" for name in sorted(have - wanted)]
    problems += [
        f"out of date {name}"
        for name in sorted(wanted & have)
        if not filecmp.cmp(generated / name, committed / name, shallow=False)
    ]
    return [f"{committed.relative_to(ROOT)}/: {p}" for p in problems]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed stubs instead of rewriting them")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        pairs = generate(Path(tmp))
        problems = [p for generated, committed in pairs for p in differences(generated, committed)]
        if args.check:
            if problems:
                print("stubs do not match protos/: " + "; ".join(problems), file=sys.stderr)
                print("fix: python scripts/gen_protos.py", file=sys.stderr)
                return 1
            print("stubs are current: " + ", ".join(p.python_dir for p in PACKAGES))
            return 0
        for generated, committed in pairs:
            committed.mkdir(parents=True, exist_ok=True)
            for name in managed_files(committed) - managed_files(generated):
                (committed / name).unlink()
            for name in sorted(managed_files(generated)):
                shutil.copyfile(generated / name, committed / name)
            print(f"wrote {committed.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
