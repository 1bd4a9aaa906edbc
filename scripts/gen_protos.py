"""Regenerate the Python gRPC stubs in hub/v1/ from protos/hub/v1/*.proto.

    python scripts/gen_protos.py            # rewrite hub/v1/
    python scripts/gen_protos.py --check    # exit 1 if hub/v1/ is not what the protos generate

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

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = Path("hub") / "v1"  # package hub.v1 -> hub/v1/, importable as hub.v1.*_pb2
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
INIT_TEXT = '''"""Generated gRPC stubs for package hub.v1. Do not edit: run scripts/gen_protos.py."""
'''
README_TEXT = """# hub/v1: generated code

Everything here is generated from `protos/hub/v1/*.proto` by `python scripts/gen_protos.py`.
Do not edit these files by hand: change the protos and regenerate. `tests/server/test_protos.py`
fails when they are out of date.
"""


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))


def generate(out_root: Path) -> Path:
    """Run protoc (grpc_tools) into ``out_root``; return the package folder it filled."""
    from grpc_tools import protoc  # grpcio-tools: a development dependency only

    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    target = out_root / PACKAGE_DIR
    target.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    # Paths relative to -I, so the generated imports read "from hub.v1 import ...".
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}; see its message above")
    (target / "__init__.py").write_text(INIT_TEXT)
    (target / "README.md").write_text(README_TEXT)
    return target


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
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with hub/v1/ instead of rewriting it")
    args = parser.parse_args(argv)
    committed = ROOT / PACKAGE_DIR
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp))
        problems = differences(generated, committed)
        if args.check:
            if problems:
                print("hub/v1 stubs do not match protos/: " + "; ".join(problems), file=sys.stderr)
                print("fix: python scripts/gen_protos.py", file=sys.stderr)
                return 1
            print("hub/v1 stubs are current")
            return 0
        committed.mkdir(parents=True, exist_ok=True)
        for name in managed_files(committed) - managed_files(generated):
            (committed / name).unlink()
        for name in sorted(managed_files(generated)):
            shutil.copyfile(generated / name, committed / name)
    print(f"wrote {committed.relative_to(ROOT)}/ ({len(proto_files())} protos)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
